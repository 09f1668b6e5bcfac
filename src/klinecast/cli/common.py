"""Helpers shared by the klinecast subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from klinecast.errors import KlinecastError


def params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="parameters file (default: %(default)s)",
    )


def path(parser: argparse.ArgumentParser, flag: str, default: str, what: str) -> None:
    parser.add_argument(
        flag, type=Path, default=Path(default), help=f"{what} (default: %(default)s)"
    )


def require(path: Path, *, produced_by: str) -> None:
    if not path.exists():
        raise KlinecastError(f"{path} does not exist; run `{produced_by}` (or `dvc repro`) first")


def read_parquet(path: Path, *, produced_by: str):
    import pandas as pd

    require(path, produced_by=produced_by)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise KlinecastError(f"{path} is not a readable Parquet file: {exc}") from None


def symbol_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbol",
        help="the one of data.symbols this run works on (needed when several are configured)",
    )


def load_symbol_params(args):
    """params.yaml narrowed to --symbol (Params.for_symbol), or as it is without one."""
    from klinecast.config import load_params

    params = load_params(args.params)
    return params.for_symbol(args.symbol) if args.symbol else params


def load_pool(args):
    """The pooled model's symbols (research.pooled.Pool) when params.yaml sets
    tune.pooling: pooled and lists several symbols, else None. Each symbol's features are read
    from where dvc.yaml's features stage writes them (`klinecast.layout.features`)."""
    from klinecast import layout
    from klinecast.config import load_params
    from klinecast.research.pooled import Pool

    params = load_params(args.params)
    if params.tune.pooling != "pooled" or len(params.data.symbols) < 2:
        return None
    return Pool.of(params, layout.features)
