"""`klinecast monitor`: live health from the ledger, and the retrain trigger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from klinecast.cli.common import params_arg, path


def add_monitor(commands) -> None:
    parser = commands.add_parser(
        "monitor",
        help="live accuracy, equity vs buy-and-hold, feature drift; trigger retraining",
        description=(
            "Read the ledger and write monitor.json, monitor.html (plots) and metrics.prom "
            "(Prometheus text format) into --out-dir, per symbol, with the challenger's shadow "
            "book beside the champion where there is one (klinecast challenger). When fewer than trade.retrain_min_accuracy "
            "of a symbol's last trade.retrain_window trades were right, and no retrain fired "
            "for that symbol within trade.retrain_cooldown_hours (each symbol has its own), "
            "fire --trigger for it: local:<command> ($KLINECAST_RETRAIN_SYMBOL and "
            "$KLINECAST_RETRAIN_REASON set), kfp:<KFP host> (a training run named "
            "retrain-<symbol>) or gitlab:<project API URL>@<ref> (a pipeline trigger with "
            "RETRAIN_SYMBOL and RETRAIN_REASON; token in $GITLAB_TRIGGER_TOKEN)."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--features",
        type=Path,
        help="features for drift, skipped if absent (default: each symbol's "
        "data/<symbol>/features.parquet)",
    )
    parser.add_argument(
        "--reference-days",
        type=int,
        default=90,
        help="training window for PSI (default: %(default)s)",
    )
    path(parser, "--out-dir", "reports/monitor", "where the JSON, HTML and metrics go")
    parser.add_argument("--trigger", help="retrain target (default: report the decision only)")
    parser.add_argument("--now", help="the clock, ISO 8601 UTC (default: the real time)")
    parser.set_defaults(run=run_monitor)


def run_monitor(args) -> int:
    from klinecast import atomic
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.trader.cycle import book_equity
    from klinecast.trader.ledger import Ledger

    book = Book(load_params(args.params))
    ledger = Ledger(book.params.trade.ledger)
    ledger.migrate()
    # a report per symbol in out-dir/<symbol>, then the book's line and JSON
    for symbol in book.symbols:
        _monitor_symbol(args, book, symbol, ledger, args.out_dir / symbol)
    equity = book_equity(ledger, book.weights)
    halts = {h.symbol: h.reason for h in ledger.halts() if h.resumed_at is None}
    summary = {"symbols": list(book.symbols), "weights": book.weights, "equity": equity, "halts": halts}
    atomic.write_json(args.out_dir / "book.json", summary)
    print(f"monitor: the book ({', '.join(book.symbols)}): equity {equity:.4f}; halts: {halts or 'none'}")
    return 0


def _monitor_symbol(args, book, symbol: str, ledger, out_dir: Path) -> None:
    import pandas as pd

    from klinecast import atomic
    from klinecast.monitor import health, page, shadow_view
    from klinecast.platform import retrain

    params = book.for_symbol(symbol)
    features_path = args.features or book.files(symbol).features
    features = pd.read_parquet(features_path) if features_path.is_file() else None
    result = health.check(
        params,
        ledger,
        features=features,
        reference_days=args.reference_days,
        now=pd.Timestamp(args.now or dt.datetime.now(dt.UTC)).to_pydatetime(),
        retrain=(lambda s, reason: retrain.trigger(args.trigger, reason=reason, symbol=s))
        if args.trigger
        else None,
    )
    state, decision = result.health, result.decision
    shadow = shadow_view.shadow_view(params, ledger, model_name=book.model_name(symbol))
    report = result.as_dict() | {"shadow": shadow.as_dict() if shadow else None}
    atomic.write_json(out_dir / "monitor.json", report)
    html = page.render(state, result.outcomes, decision, result.trading, shadow)
    atomic.atomic_write(out_dir / "monitor.html", lambda tmp: tmp.write_text(html))
    prom = health.prometheus_text(
        state, symbol=params.data.symbol, trading=result.trading, shadow=shadow
    )
    atomic.atomic_write(out_dir / "metrics.prom", lambda tmp: tmp.write_text(prom))
    accuracy = "-" if state.accuracy is None else f"{state.accuracy:.0%}"
    fired = f"; triggered {result.triggered}" if result.triggered else ""
    print(
        f"monitor: {params.data.symbol}: {state.trades} trades, accuracy {accuracy}, equity "
        f"{state.equity:.4f} (buy and hold {state.buy_and_hold:.4f}); drift: {state.drift_note}; "
        f"retrain: {decision.reason}{fired}; trading: {result.trading.summary}"
        + (f"; {shadow_view.summary(shadow)}" if shadow else "")
    )
