"""`klinecast <stage>`: the entry points that dvc.yaml, the images and people call."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import version as package_version

from klinecast.cli import (
    challenger,
    data,
    model,
    monitor,
    pipeline,
    portfolio,
    registry,
    serving,
    trade,
)
from klinecast.errors import KlinecastError

log = logging.getLogger("klinecast")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args) or 0
    except KlinecastError as exc:
        print(f"klinecast {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"klinecast {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klinecast",
        description=(
            "Hourly crypto forecasting on Binance klines: verified data, TA-Lib features, "
            "walk-forward tuning and evaluation after fees, a model registry and KServe "
            "serving. Every stage reads its parameters from params.yaml."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "typical run:\n"
            "  klinecast ingest          # download + verify archives into data/raw\n"
            "  dvc add data/raw          # (make data does both)\n"
            "  dvc repro                 # candles -> features -> pool -> tune -> evaluate\n"
            "                            #   -> train -> publish -> report -> portfolio\n"
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--version", action="version", version=f"klinecast {package_version('klinecast')}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    data.add_ingest(commands)
    data.add_candles(commands)
    data.add_features(commands)
    model.add_tune(commands)
    model.add_evaluate(commands)
    model.add_train(commands)
    model.add_publish(commands)
    model.add_report(commands)
    model.add_tune_trial(commands)
    model.add_katib(commands)
    model.add_validate_params(commands)
    portfolio.add_portfolio(commands)
    portfolio.add_pool(commands)
    serving.add_serve(commands)
    serving.add_manifest(commands)
    serving.add_deploy(commands)
    registry.add_registry(commands)
    registry.add_rollback(commands)
    registry.add_promote(commands)
    challenger.add_challenger(commands)
    pipeline.add_pipeline(commands)
    trade.add_trade(commands)
    monitor.add_monitor(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
