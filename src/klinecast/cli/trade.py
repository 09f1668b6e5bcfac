"""`klinecast trade once | resume | replay`: the hourly trader."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from klinecast.cli.common import params_arg, read_parquet
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
        help="run one hourly cycle (exit 1: no trade or failed; 3: halted; 4: another cycle is "
        "running)",
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
        nargs="+",
        help="read the market from these candle files, one per symbol of data.symbols in "
        "order, instead of Binance REST (offline, paper broker only; e.g. "
        "data/BTCUSDT/candles.parquet with --now at a past hour)",
    )
    once.set_defaults(run=run_once)

    resume = actions.add_parser(
        "resume",
        help="clear the kill switch (a manual decision, on record)",
        description=(
            "Clear the symbol's kill switch. The ledger keeps who resumed, when and why, and "
            "records a new equity base: later cycles measure the cumulative return from the "
            "equity now, so the next cycle does not trip the switch again at once. A halt on a "
            "difference with the exchange is not cleared here (exit 3): `trade resolve` "
            "decides it."
        ),
    )
    params_arg(resume)
    resume.add_argument(
        "--symbol",
        help="the symbol to resume, or '*' for the book's kill switch (default: the one of "
        "data.symbols)",
    )
    _decider(resume)
    resume.set_defaults(run=run_resume)

    resolve = actions.add_parser(
        "resolve",
        help="end a halt on a difference between the ledger and the exchange",
        description=(
            "A cycle halts the symbol when the ledger's position and the exchange's differ "
            "beyond trade.reconcile_tolerance. Decide which is right: --adopt exchange (the "
            "ledger takes the exchange's position: an order it never knew of) or --adopt "
            "ledger (the exchange's baseline moves: coins moved in or out of the account by "
            "hand). The ledger keeps the decision, who made it and when."
        ),
    )
    params_arg(resolve)
    resolve.add_argument("--symbol", help="the halted symbol (default: the one of data.symbols)")
    resolve.add_argument("--adopt", required=True, choices=["exchange", "ledger"])
    _decider(resolve)
    resolve.set_defaults(run=run_resolve)

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
    replay.add_argument(
        "--symbol",
        action="append",
        help="a symbol to replay, repeatable (default: every traded one of data.symbols, those "
        "with a weight); with several symbols the candles are sent named, so one service with a "
        "model per symbol answers each with its own model",
    )
    replay.add_argument("--start", required=True, type=dt.date.fromisoformat)
    replay.add_argument("--end", required=True, type=dt.date.fromisoformat)
    replay.add_argument(
        "--candles",
        type=Path,
        nargs="+",
        help="candle history of each replayed symbol, in order (default: each one's "
        "data/<symbol>/candles.parquet)",
    )
    replay.add_argument(
        "--ledger", default="sqlite:///build/replay-ledger.db", help="default: %(default)s"
    )
    replay.set_defaults(run=run_replay)


def run_once(args) -> int:
    import pandas as pd

    from klinecast.config import load_params
    from klinecast.data import market
    from klinecast.trader import live
    from klinecast.trader.cycle import run_book

    params = load_params(args.params)
    now = pd.Timestamp(args.now or dt.datetime.now(dt.UTC))
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    hour = market.newest_closed_hour(now)
    if args.candles is not None and params.trade.broker != "paper":
        raise KlinecastError("--candles works with the paper broker only")
    traders = live.book(params)
    if args.candles is not None:
        if len(args.candles) != len(traders):
            raise KlinecastError(
                f"--candles: give one file per traded symbol ({', '.join(traders)}), in that "
                f"order; got {len(args.candles)}"
            )
        for (symbol, trader), path in zip(traders.items(), args.candles, strict=True):
            trader.market = _offline_market(path, symbol)
    result = run_book(traders, params, hour=hour)
    for symbol, one in result.symbols.items():
        report(one, symbol=symbol)
    print(
        f"trade: the book's equity {result.equity:.4f}" + (f"; HALTED: {result.halt}" if result.halt else "")
    )
    return result.exit_code


def _offline_market(path: Path, symbol: str):
    from klinecast.trader.replay import frame_market

    return frame_market(read_parquet(path, produced_by=f"dvc repro candles@{symbol}"))


def report(result, *, symbol: str = "") -> None:
    """The cycle's one line: what was decided, what was sent and what it became."""
    where = {1: "long", -1: "short", 0: "flat", None: "-"}[result.target]
    if result.stage:
        head = f"{result.status} ({result.stage}), holding {where}"
    elif result.prob_up is not None:
        head = f"{result.status}, prob_up {result.prob_up:.4f} -> {where}"
    else:
        head = f"{result.status}, holding {where}"
    sent = [o for o in result.orders if o.sent]
    orders = f"sent {len(sent)} order{'s' if len(sent) > 1 else ''}: " + ", ".join(map(str, sent))
    line = f"trade: {symbol + ': ' if symbol else ''}hour {result.hour:%Y-%m-%d %H:%M} UTC: {head}; "
    line += orders if sent else "no order"
    print(line + (f"; {result.reason}" if result.reason else ""))


def _decider(parser) -> None:
    parser.add_argument(
        "--by", default=os.environ.get("USER") or "operator",
        help="who decides (default: $USER)",
    )  # fmt: skip
    parser.add_argument("--note", default="", help="why, for the record")


def run_resume(args) -> int:
    """Exit 0 when the kill switch is cleared (or none held), 3 when the symbol stays halted
    by a reconcile difference (`trade resolve` decides that)."""
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.trader.cycle import KILL_SWITCH, resume
    from klinecast.trader.ledger import Ledger

    params = load_params(args.params)
    ledger = Ledger(params.trade.ledger)
    ledger.migrate()
    symbol = args.symbol or params.data.symbol
    halt = ledger.own_halt(symbol)
    done = resume(ledger, symbol, by=args.by, note=args.note, weights=Book(params).weights)
    print(f"trade resume: {done}")
    return 3 if halt is not None and halt.kind != KILL_SWITCH else 0


def run_resolve(args) -> int:
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.trader import live
    from klinecast.trader.cycle import resolve

    params = load_params(args.params)
    symbol = args.symbol or params.data.symbol
    trader = live.trader(Book(params).for_symbol(symbol))
    trader.ledger.migrate()
    print(f"trade resolve: {resolve(trader, adopt=args.adopt, by=args.by, note=args.note)}")
    return 0


def run_replay(args) -> int:
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.trader import live
    from klinecast.trader.replay import replay

    book = Book(load_params(args.params))
    symbols = args.symbol or list(book.traded)
    if args.end < args.start:
        raise KlinecastError(f"--end {args.end} is before --start {args.start}")
    histories = args.candles or [book.files(symbol).candles for symbol in symbols]
    if len(histories) != len(symbols):
        raise KlinecastError(
            f"--candles: give one file per replayed symbol ({', '.join(symbols)}), in that "
            f"order; got {len(histories)}"
        )
    if args.ledger.startswith("sqlite:///"):
        Path(args.ledger.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for symbol, history in zip(symbols, histories, strict=True):
        params = book.for_symbol(symbol)
        summary = replay(
            params,
            candles=read_parquet(history, produced_by="dvc repro candles"),
            start=args.start,
            end=args.end,
            ledger_url=args.ledger,
            # past hours: the store holds only the newest, so the candles are sent, named as
            # the symbol's, and its own model answers
            predict=live.predictor(params, by_symbol=False),
            shadow=live.challenger_predictor(params, by_symbol=False),
        )
        print(
            f"trade replay: {symbol}: {summary['hours']} hours, {summary['traded']} traded, "
            f"{summary['orders']} orders; equity {summary['equity']:.4f} "
            f"(buy and hold {summary['buy_and_hold']:.4f}) -> {args.ledger}"
        )
        if summary["shadow"] is not None:
            version, equity = summary["shadow"]
            print(f"trade replay: {symbol}: shadow book of the challenger {version}: equity {equity:.4f}")
    return 0
