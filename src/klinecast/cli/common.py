"""Helpers shared by the klinecast subcommands: the params, the book's symbols and the layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="parameters file (default: %(default)s)",
    )


def registry_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )


def decision_args(parser: argparse.ArgumentParser, *, default_reason: str) -> None:
    """What a command that moves a model's pointer records, and where it pins the cluster."""
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.add_argument("--reason", default=default_reason, help="why, for the record")
    parser.add_argument("--by", help="who, for the record (default: $USER)")


def decided_by(args) -> str:
    """Who decides: --by, else $USER."""
    import os

    from klinecast import environment

    return args.by or os.environ.get(environment.USER) or "unknown"


def path(parser: argparse.ArgumentParser, flag: str, default: str, what: str) -> None:
    parser.add_argument(
        flag, type=Path, default=Path(default), help=f"{what} (default: %(default)s)"
    )


def read_parquet(path: Path, *, produced_by: str):
    from klinecast.stages.files import read_parquet

    return read_parquet(path, produced_by=produced_by)


def symbol_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbol",
        help="the one of data.symbols this run works on (default: each of them, in order)",
    )


def stage_args(parser: argparse.ArgumentParser) -> None:
    """--params, --symbol and --root: what every stage command takes."""
    params_arg(parser)
    symbol_arg(parser)
    root_arg(parser)


def root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="where the stages' files are, laid out as dvc.yaml lays them out (default: the "
        "current directory)",
    )


class StageRun:
    """A stage command's params, the symbols it runs for, and where their files are."""

    def __init__(self, args):
        from klinecast.book import Book, Layout
        from klinecast.config import load_params

        self.params = load_params(args.params)
        self.book = Book(self.params)
        self.layout = Layout(args.root)
        self.symbols = [args.symbol] if args.symbol else list(self.book.symbols)
        for symbol in self.symbols:
            self.book.for_symbol(symbol)  # an unknown --symbol fails here, before any work

    def files(self, symbol: str):
        return self.book.files(symbol, self.layout)

    @property
    def features(self):
        """Every symbol's feature file where the features stage writes it."""
        from klinecast.stages.inputs import BookFeatures

        return BookFeatures.at(self.params, self.layout)


def load_symbol_params(args):
    """params.yaml narrowed to --symbol (`Book.for_symbol`), or the whole book without one."""
    from klinecast.book import Book
    from klinecast.config import load_params

    params = load_params(args.params)
    return Book(params).for_symbol(args.symbol) if args.symbol else params
