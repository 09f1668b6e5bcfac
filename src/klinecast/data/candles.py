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
_MILLISECOND_FLOOR = 10**11  # 1973-03: smaller values are seconds or garbage


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
    if raw.shape[1] != len(KLINE_COLUMNS):
        raise CandleDataError(
            source, f"expected {len(KLINE_COLUMNS)} columns, found {raw.shape[1]}", row=1
        )
    if raw.empty:
        raise CandleDataError(source, "the CSV holds no candles")
    raw.columns = list(KLINE_COLUMNS)
    first_row = 2 if has_header else 1
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
    index = _open_times(numbers["open_time"], rows=rows, source=source, interval=interval)
    frame = pd.DataFrame({c: numbers[c].to_numpy(dtype=float) for c in CANDLE_COLUMNS}, index=index)
    frame["trades"] = frame["trades"].astype("int64")
    validate_candles(frame, source=source, rows=rows)
    return frame


def _open_times(
    values: pd.Series, *, rows: np.ndarray, source: str, interval: dt.timedelta
) -> pd.DatetimeIndex:
    stamps = values.to_numpy(dtype="int64")
    too_small = stamps < _MILLISECOND_FLOOR
    if too_small.any():
        i = int(np.flatnonzero(too_small)[0])
        raise CandleDataError(
            source,
            f"open_time {stamps[i]} is neither a millisecond nor a microsecond epoch",
            row=int(rows[i]),
        )
    micros = np.where(stamps >= _MICROSECOND_FLOOR, stamps, stamps * 1000)
    step = int(interval.total_seconds() * 1_000_000)
    misaligned = micros % step != 0
    if misaligned.any():
        i = int(np.flatnonzero(misaligned)[0])
        raise CandleDataError(
            source, f"open_time {stamps[i]} is not on a {interval} boundary", row=int(rows[i])
        )
    return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True), name="open_time")


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
