"""`klinecast trade once | resume | replay`: the hourly trader."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from klinecast.cli.common import params_arg, path, read_parquet
from klinecast.errors import KlinecastError

log = logging.getLogger("klinecast")


def add_trade(commands) -> None:
    parser = commands.add_parser(
        "trade",
        help="the hourly trader: one cycle, resume after the kill switch, or replay history",
        description=(
            "Once an hour (a Kubernetes CronJob at minute 1): fetch the last min_history closed "
            "candles from Binance, ask the InferenceService, move the position to long, short "
            "or flat through the broker (trade.broker: paper or testnet; $KLINECAST_BROKER "
            "overrides it), and record everything in the ledger (trade.ledger; "
            "$KLINECAST_LEDGER_URL overrides it)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")

    once = actions.add_parser(
        "once",
        help="run one hourly cycle (exit 1 when no trade could be made)",
        description=(
            "Trade the newest closed hour. Running twice in one hour sends nothing the second "
            "time; after a crash between an order and its record, the next run finds the order "
            "on the exchange by its client order id. Testnet keys come from $BINANCE_API_KEY and "
            "$BINANCE_API_SECRET only. $KLINECAST_INFERENCE_URL and $KLINECAST_BINANCE_URL override the "
            "InferenceService and the Binance REST base URLs."
        ),
    )
    params_arg(once)
    once.add_argument("--now", help="the clock, ISO 8601 UTC (default: the real time)")
    once.add_argument(
        "--candles",
        type=Path,
        help="read the market from this candle file instead of Binance REST (offline, paper "
        "broker only; e.g. data/candles.parquet with --now at a past hour)",
    )
    once.set_defaults(run=run_once)

    resume = actions.add_parser("resume", help="clear the kill switch (a manual decision)")
    params_arg(resume)
    resume.set_defaults(run=run_resume)

    replay = actions.add_parser(
        "replay",
        help="run the cycle over historical hours with the paper broker and a simulated clock",
        description=(
            "For every hour from --start to --end (inclusive days, UTC): the candles up to that "
            "hour from --candles, the running InferenceService, the paper broker, a fresh "
            "ledger. Its predictions and PnL equal the offline backtest's for the same model, "
            "hours and fees."
        ),
    )
    params_arg(replay)
    replay.add_argument("--start", required=True, type=dt.date.fromisoformat)
    replay.add_argument("--end", required=True, type=dt.date.fromisoformat)
    path(replay, "--candles", "data/candles.parquet", "candle history")
    replay.add_argument(
        "--ledger", default="sqlite:///build/replay-ledger.db", help="default: %(default)s"
    )
    replay.set_defaults(run=run_replay)


def run_once(args) -> int:
    import pandas as pd

    from klinecast.config import load_params
    from klinecast.data import market
    from klinecast.trader import live
    from klinecast.trader.cycle import run_once as cycle

    params = load_params(args.params)
    now = pd.Timestamp(args.now or dt.datetime.now(dt.UTC))
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    hour = market.newest_closed_hour(now)
    trader = live.trader(params)
    if args.candles is not None:
        from klinecast.trader.replay import frame_market

        if params.trade.broker != "paper":
            raise KlinecastError("--candles works with the paper broker only")
        trader.market = frame_market(read_parquet(args.candles, produced_by="dvc repro candles"))
    result = cycle(trader, hour=hour)
    report(result)
    return 0 if result.ok else 1


def report(result) -> None:
    where = {1: "long", -1: "short", 0: "flat", None: "-"}[result.target]
    detail = f"prob_up {result.prob_up:.4f} -> {where}" if result.prob_up is not None else where
    line = f"trade: hour {result.hour:%Y-%m-%d %H:%M} UTC: {result.status}, {detail}"
    line += f", {result.orders_sent} order(s) sent"
    print(line + (f"; {result.reason}" if result.reason else ""))


def run_resume(args) -> int:
    from klinecast.config import load_params
    from klinecast.trader.cycle import HALTED
    from klinecast.trader.ledger import Ledger

    params = load_params(args.params)
    ledger = Ledger(params.trade.ledger)
    ledger.migrate()
    reason = ledger.get_state(HALTED)
    if reason is None:
        print("trade resume: trading was not halted")
        return 0
    ledger.set_state(HALTED, None)
    print(f"trade resume: the kill switch ({reason}) is cleared; the next cycle trades")
    return 0


def run_replay(args) -> int:
    from klinecast.config import load_params
    from klinecast.trader import live
    from klinecast.trader.replay import replay

    params = load_params(args.params)
    if args.end < args.start:
        raise KlinecastError(f"--end {args.end} is before --start {args.start}")
    if args.ledger.startswith("sqlite:///"):
        Path(args.ledger.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    candles = read_parquet(args.candles, produced_by="dvc repro candles")
    summary = replay(
        params,
        candles=candles,
        start=args.start,
        end=args.end,
        ledger_url=args.ledger,
        predict=live.predictor(params, by_symbol=False),  # past hours: the store holds the newest
    )
    print(
        f"trade replay: {summary['hours']} hours, {summary['traded']} traded, "
        f"{summary['orders']} orders; equity {summary['equity']:.4f} "
        f"(buy and hold {summary['buy_and_hold']:.4f}) -> {args.ledger}"
    )
    return 0
