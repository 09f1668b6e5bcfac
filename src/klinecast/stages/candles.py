"""The candles stage: a symbol's archives parsed and validated into one candle table, and the
reference's candles that the cross-asset features read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.data.build import CandleReport, build_candles


def candles(params: Params, symbol: str, *, raw: Path, out: Path, report: Path) -> CandleReport:
    """Parses raw/<symbol>'s archives, validates the candle rules (hourly index, no duplicates,
    OHLC, non-negative volumes) and writes the candles and the report of rows, span and gaps.
    Gaps are reported, never filled.

    Args:
        raw: every symbol's archives, a folder each (ingest's output).

    Raises:
        KlinecastError: a bad archive (named, with its row); nothing is written.
    """
    data = Book(params).for_symbol(symbol).data
    frame, found = build_candles(raw / symbol, data)
    atomic.write_parquet(out, frame)
    atomic.write_json(report, found.as_dict())
    return found


def reference(params: Params, *, raw: Path, out: Path) -> CandleReport | None:
    """features.reference's candles for the cross-asset features, or, without them, an empty
    table (the same bytes every time, so that no symbol's features run again).

    Returns:
        The reference's report, or None when there are no cross-asset features.
    """
    features = params.features
    if not features.cross_asset:
        atomic.write_parquet(out, pd.DataFrame())
        return None
    data = dataclasses.replace(params.data, symbols=(features.reference,))
    frame, found = build_candles(raw / features.reference, data)
    atomic.write_parquet(out, frame)
    return found
