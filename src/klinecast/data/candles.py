"""Parsing Binance kline archives into candles, and validating them.

The candle frame has a UTC `open_time` index and the columns in CANDLE_COLUMNS (the DESIGN.md
schema). Every error names the archive and, where there is one, the CSV row (1-based).
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.errors import CandleDataError

#: Binance's 12 kline CSV columns, in file order.
KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
CANDLE_COLUMNS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
PRICE_COLUMNS = ("open", "high", "low", "close")
NON_NEGATIVE_COLUMNS = (
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)

# Binance spot archives switched from milliseconds to microseconds on 2025-01-01. Any epoch
# in microseconds since 2001-09 is >= 1e15, and no millisecond epoch before the year 33658 is.
_MICROSECOND_FLOOR = 10**15
#: Candle times lie between 2009 (Bitcoin's first block) and 2100; other epochs are garbage.
EARLIEST_US = 1_230_768_000 * 10**6
LATEST_US = 4_102_444_800 * 10**6


@dataclass(frozen=True)
class Gap:
    """Missing candles between two present ones: `first` .. `last` inclusive."""

    first: pd.Timestamp
    last: pd.Timestamp
    missing: int

    def as_dict(self) -> dict:
        return {
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "missing": self.missing,
        }


def read_archive(content: bytes, *, source: str) -> bytes:
    """Returns the bytes of the one CSV inside a kline zip.

    Raises:
        CandleDataError: the zip is truncated or corrupt, or holds zero or several members.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise CandleDataError(
                    source, f"holds {len(members)} members {names}; expected exactly one CSV"
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CandleDataError(
            source, f"not a readable zip archive (truncated or corrupt): {exc}"
        ) from None


def parse_klines(csv: bytes, *, source: str, interval: dt.timedelta) -> pd.DataFrame:
    """Parses one kline CSV into a candle frame, validating every row.

    The CSV has Binance's 12 columns; a header row is accepted and skipped. Timestamps in
    milliseconds and in microseconds land on the same UTC index.

    Raises:
        CandleDataError: naming the row of the first problem found.
    """
    first_line = csv.split(b"\n", 1)[0].strip()
    has_header = first_line[:4].lower() == b"open"
    try:
        raw = pd.read_csv(
            io.BytesIO(csv),
            header=None,
            skiprows=1 if has_header else 0,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        raise CandleDataError(source, f"expected {len(KLINE_COLUMNS)} columns: {exc}") from None
    except pd.errors.EmptyDataError:
        raise CandleDataError(source, "the CSV is empty: it holds no candles") from None
    return klines_frame(raw, source=source, interval=interval, first_row=2 if has_header else 1)


def klines_frame(
    raw: pd.DataFrame, *, source: str, interval: dt.timedelta, first_row: int = 1
) -> pd.DataFrame:
    """Binance's 12 kline columns (a CSV's cells, or the REST API's rows) -> a candle frame.

    Args:
        raw: one row per kline, the 12 columns in Binance's order, numbers or their text.
        first_row: the row number of raw's first row, for error messages (1-based).

    Raises:
        CandleDataError: naming the row of the first problem found.
    """
    if raw.shape[1] != len(KLINE_COLUMNS):
        raise CandleDataError(
            source, f"expected {len(KLINE_COLUMNS)} columns, found {raw.shape[1]}", row=first_row
        )
    if raw.empty:
        raise CandleDataError(source, "the CSV holds no candles")
    raw.columns = list(KLINE_COLUMNS)
    rows = np.arange(first_row, first_row + len(raw))
    numbers = {}
    for column in KLINE_COLUMNS:
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = raw[column].iloc[i]
            what = "an empty cell" if cell == "" else f"non-numeric value {cell!r}"
            raise CandleDataError(source, f"column {column}: {what}", row=int(rows[i]))
        numbers[column] = values
    try:
        micros = epoch_micros(numbers["open_time"].to_numpy(dtype="int64"))
    except TimestampError as exc:
        raise CandleDataError(source, exc.reason, row=int(rows[exc.position])) from None
    index = pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True), name="open_time")
    i = first_off_grid(index, interval=interval)
    if i is not None:
        raise CandleDataError(
            source, f"open_time {index[i]} is not on a {interval} boundary", row=int(rows[i])
        )
    frame = pd.DataFrame({c: numbers[c].to_numpy(dtype=float) for c in CANDLE_COLUMNS}, index=index)
    frame["trades"] = frame["trades"].astype("int64")
    validate_candles(frame, source=source, rows=rows)
    return frame


class TimestampError(ValueError):
    """An open time that is not a candle time; `position` is its place in the input."""

    def __init__(self, position: int, reason: str):
        super().__init__(reason)
        self.position = position
        self.reason = reason


def epoch_micros(stamps: np.ndarray) -> np.ndarray:
    """Epochs in milliseconds or microseconds, the unit told apart per value -> microseconds.

    Raises:
        TimestampError: a value that is neither, or not between 2009 and 2100.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    micros = np.where(stamps >= _MICROSECOND_FLOOR, stamps, stamps * 1000)
    outside = (micros < EARLIEST_US) | (micros > LATEST_US)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise TimestampError(
            i,
            f"open_time {stamps[i]} is neither a millisecond nor a microsecond epoch between 2009 "
            "and 2100",
        )
    return micros


def first_off_grid(index: pd.DatetimeIndex, *, interval: dt.timedelta) -> int | None:
    """The position of the first open time that is not on an interval boundary, if any."""
    off = np.flatnonzero(index.asi8 % pd.Timedelta(interval).value != 0)
    return int(off[0]) if len(off) else None


def validate_candles(frame: pd.DataFrame, *, source: str, rows: np.ndarray | None = None) -> None:
    """Checks the candle rules; raises CandleDataError naming the first offending row.

    Rules: a strictly increasing index (no duplicates), positive prices,
    high >= max(open, close), low <= min(open, close), non-negative volumes and trade counts.

    Args:
        rows: the CSV row number of every candle; defaults to 1-based positions.
    """
    if rows is None:
        rows = np.arange(1, len(frame) + 1)
    stamps = frame.index.asi8
    steps = np.diff(stamps)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        kind = "duplicate" if steps[i - 1] == 0 else "out-of-order"
        raise CandleDataError(
            source,
            f"{kind} open_time {frame.index[i]} after {frame.index[i - 1]}",
            row=int(rows[i]),
        )
    o, h, lo, c = (frame[col].to_numpy(dtype=np.float64) for col in PRICE_COLUMNS)
    volumes = np.column_stack(
        [frame[col].to_numpy(dtype=np.float64) for col in NON_NEGATIVE_COLUMNS]
    )
    checks = (
        ("a price is not positive", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)),
        ("high is below open or close", h < np.maximum(o, c)),
        ("low is above open or close", lo > np.minimum(o, c)),
        ("a volume or trade count is negative", (volumes < 0).any(axis=1)),
    )
    for reason, broken in checks:
        if broken.any():
            i = int(np.flatnonzero(broken)[0])
            values = ", ".join(f"{col}={frame[col].iloc[i]:g}" for col in CANDLE_COLUMNS[:6])
            raise CandleDataError(
                source, f"{reason} at {frame.index[i]} ({values})", row=int(rows[i])
            )


def find_gaps(index: pd.DatetimeIndex, *, interval: dt.timedelta) -> list[Gap]:
    """Lists the runs of missing candles in a strictly increasing index."""
    step = pd.Timedelta(interval)
    deltas = index[1:] - index[:-1]
    gaps = []
    for i in np.flatnonzero(deltas > step):
        missing = int(deltas[i] // step) - 1
        gaps.append(Gap(index[i] + step, index[i + 1] - step, missing))
    return gaps
