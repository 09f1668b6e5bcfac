"""A stage's input files: there, and readable, or a clear error naming what writes them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from klinecast.errors import KlinecastError


def require(path: Path, *, produced_by: str) -> Path:
    """path, if it exists.

    Raises:
        KlinecastError: it does not, naming the command that writes it.
    """
    if not Path(path).exists():
        raise KlinecastError(f"{path} does not exist; run `{produced_by}` (or `dvc repro`) first")
    return Path(path)


def read_parquet(path: Path, *, produced_by: str) -> pd.DataFrame:
    """A stage's Parquet input.

    Raises:
        KlinecastError: the file is missing or not readable, naming what writes it.
    """
    try:
        return pd.read_parquet(require(path, produced_by=produced_by))
    except KlinecastError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise KlinecastError(f"{path} is not a readable Parquet file: {exc}") from None
