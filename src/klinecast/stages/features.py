"""The features stage: a symbol's indicators and labels, with the function serving uses too."""

from __future__ import annotations

from pathlib import Path

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.indicators import indicator_lookback
from klinecast.research.features import FeatureSet, symbol_features
from klinecast.stages.files import read_parquet


def features(
    params: Params, symbol: str, *, candles: Path, reference: Path, out: Path, report: Path
) -> FeatureSet:
    """features.indicators of the symbol's candles, then features.cross_asset of the
    reference's at the same hour, with the label and the next hour's return: what
    `klinecast features sync` writes to the online store too. Rows whose indicator window
    crosses a gap are dropped and counted.

    Args:
        reference: the reference stage's candles (read only for cross-asset features).

    Raises:
        KlinecastError: an input is missing or unreadable, or there are too few candles for a
            single row; nothing is written.
    """
    settings = Book(params).for_symbol(symbol)
    frame = read_parquet(candles, produced_by=f"klinecast candles --symbol {symbol}")
    others = (
        read_parquet(reference, produced_by="klinecast candles --reference")
        if settings.features.cross_asset
        else None
    )
    found = symbol_features(
        frame, settings.features, interval=settings.data.interval_delta, reference_candles=others
    )
    if found.frame.empty:
        longest = max(indicator_lookback(name) for name in settings.features.indicators)
        raise KlinecastError(
            f"no feature rows: the {len(frame)} candles are fewer than the longest indicator "
            f"window ({longest} candles) needs; ingest a longer span or drop the longest "
            "features from features.indicators (nothing was written)"
        )
    atomic.write_parquet(out, found.frame)
    atomic.write_json(report, found.report(min_history=settings.features.min_history))
    return found

