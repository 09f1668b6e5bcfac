"""The sync that keeps the online store fresh: the candles closed since the store's newest row
(plus min_history before them), their feature rows from the same `compute_features` as
training, written oldest first in batches. A sync that fails midway leaves what it wrote, and
the next one starts from there.

Candles come from Binance REST (`binance_source`) or from the archive layout
(`archive_source`, a mirror when offline); `source_for` picks one the way the CLI, the refresh
pipeline and the CronJob all do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from klinecast.book import Book
from klinecast.config import INTERVALS, DataParams, Params
from klinecast.data import market
from klinecast.data.archives import symbol_dir
from klinecast.data.build import build_candles
from klinecast.data.ingest import ingest
from klinecast.errors import KlinecastError
from klinecast.indicators import fetch_hours
from klinecast.research.features import symbol_features
from klinecast.serving.online_store import (
    OnlineStoreError,
    StoreSettings,
    newest_row,
    open_store,
    write_rows,
)

#: (symbol, interval, first open_time, last open_time) -> the candles, oldest first
CandleSource = Callable[[str, str, pd.Timestamp, pd.Timestamp], pd.DataFrame]


@dataclass(frozen=True)
class SyncResult:
    symbol: str
    newest_before: pd.Timestamp | None
    newest_after: pd.Timestamp | None
    written: int

    @property
    def up_to_date(self) -> bool:
        return self.written == 0

    def __str__(self) -> str:
        if self.up_to_date:
            return f"nothing new for {self.symbol}; the store holds up to {self.newest_after}"
        return (
            f"{self.symbol}: {self.written} new row(s), newest candle {self.newest_after} "
            f"(was {self.newest_before})"
        )


def sync(
    params: Params,
    *,
    settings: StoreSettings,
    source: CandleSource,
    now: pd.Timestamp,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Brings the store up to the newest candle closed by `now`. Idempotent.

    Raises:
        OnlineStoreError: Redis failed (what was written stays).
        KlinecastError: the candle source failed (nothing new was written).
    """
    data, names = params.data, list(params.features.names)
    step = pd.Timedelta(data.interval_delta)
    store = open_store(settings, names, apply=True)
    known = newest_row(store, data.symbol, names)
    newest = known.candle_time if known else None
    last_closed = now.floor(step) - step
    if newest is not None and newest >= last_closed:
        return SyncResult(data.symbol, newest, newest, 0)
    first_new = last_closed if newest is None else newest + step
    history = step * (fetch_hours(params.features.min_history) - 1)
    candles = source(data.symbol, data.interval, first_new - history, last_closed)
    if candles.empty:  # the source has nothing newer yet (archives lag a day)
        return SyncResult(data.symbol, newest, newest, 0)
    reference = None
    if params.features.cross_asset:  # the reference's candles over the same hours
        reference = source(
            params.features.reference, data.interval, first_new - history, last_closed
        )
    rows = complete_rows(candles, params, first_new=first_new, reference_candles=reference)
    written = write_rows(
        store, settings, data.symbol, rows, names, interval=data.interval_delta, progress=progress
    )
    after = rows.index[-1] if written else newest
    return SyncResult(data.symbol, newest, after, written)


def complete_rows(
    candles: pd.DataFrame,
    params: Params,
    *,
    first_new: pd.Timestamp,
    reference_candles: pd.DataFrame | None = None,
):
    """The feature rows from first_new on that have min_history candles behind them (gaps
    allowed), so each equals the row training computes on full history (symbol_features, with
    the cross-asset reference's candles over the same hours)."""
    interval = params.data.interval_delta
    frame = symbol_features(
        candles, params.features, interval=interval, reference_candles=reference_candles
    ).frame
    behind = candles.index.get_indexer(frame.index) + 1  # candles up to and with the row's
    enough = behind >= params.features.min_history
    if reference_candles is not None:  # and as many of the reference's
        theirs = reference_candles.index.searchsorted(frame.index, side="right")
        enough &= theirs >= params.features.min_history
    return frame[(frame.index >= first_new) & enough]


def binance_source(url: str) -> CandleSource:
    """Closed candles from Binance REST (python-binance, bounded retries)."""
    binance = market.client(url=url)

    def fetch(symbol: str, interval: str, first: pd.Timestamp, last: pd.Timestamp):
        count = int((last - first) / pd.Timedelta(INTERVALS[interval])) + 1
        return market.closed_candles(
            binance, symbol=symbol, interval=interval, until=last, count=count
        )

    return fetch


def archive_source(base_url: str, cache_dir, *, today: dt.date) -> CandleSource:
    """Closed candles from the archive layout (data.binance.vision or a mirror of it), kept
    verified in cache_dir so the next sync downloads only what is new."""
    # a day's archive is published after the day: yesterday's last candle is the newest
    published = pd.Timestamp(today, tz="UTC") - pd.Timedelta(INTERVALS["1h"])

    def fetch(symbol: str, interval: str, first: pd.Timestamp, last: pd.Timestamp):
        last = min(last, published)
        if last < first:
            return pd.DataFrame()
        wanted = DataParams(
            symbols=(symbol,), interval=interval, start=first.date(), end=last.date(),
            base_url=base_url,
        )  # fmt: skip
        ingest(wanted, raw_dir=Path(cache_dir), base_url=base_url, today=today, progress=False)
        candles, _ = build_candles(symbol_dir(Path(cache_dir), symbol), wanted)
        window = candles.loc[first:last]
        if window.empty:
            raise KlinecastError(
                f"the archives at {base_url} have no {symbol} {interval} candles between "
                f"{first} and {last}"
            )
        return window

    return fetch


def sync_store(
    params: Params,
    *,
    now: pd.Timestamp,
    base_url: str | None = None,
    archive_cache: Path = Path("build/sync-archives"),
    progress: Callable[[int], None] | None = None,
) -> tuple[list[SyncResult], str]:
    """The store of params.online brought up to `now` for every symbol of data.symbols: what `klinecast features sync`, the
    refresh pipeline's last step and the hourly CronJob all run.

    Args:
        base_url: read candles from the archive layout there (a mirror, offline), kept
            verified in archive_cache; None reads Binance REST ($KLINECAST_BINANCE_URL, else
            the mainnet).

    Returns:
        What the sync did for each symbol, and where its candles came from.

    Raises:
        KlinecastError: some symbols failed; the others were synced, and the message names
            each failure.
    """
    if base_url:
        source, where = archive_source(base_url, archive_cache, today=now.date()), base_url
    else:
        where = market.rest_url(testnet=False)
        source = binance_source(where)
    settings = StoreSettings.of(params.online)
    results, failures = [], []
    for symbol in params.data.symbols:
        try:
            results.append(
                sync(
                    Book(params).for_symbol(symbol),
                    settings=settings,
                    source=source,
                    now=now,
                    progress=progress,
                )
            )
        except OnlineStoreError:
            raise  # the store is every symbol's: the next would fail the same way
        except KlinecastError as exc:  # the candle source failed for it: the next still syncs
            failures.append(f"{symbol}: {exc}")
    if failures:
        done = "; ".join(str(r) for r in results) or "none"
        raise KlinecastError(
            f"features sync failed for {len(failures)} of {len(params.data.symbols)} symbol(s) "
            f"(what was written stays; synced: {done}):\n  " + "\n  ".join(failures)
        )
    return results, where
