"""`klinecast candles`: all verified archives in data/raw -> one validated candle frame."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from klinecast.config import DataParams
from klinecast.data.candles import Gap, find_gaps, parse_klines, read_archive
from klinecast.errors import CandleDataError


@dataclass(frozen=True)
class CandleReport:
    """What `klinecast candles` found: size, span and every gap."""

    files: int
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp
    gaps: tuple[Gap, ...]

    @property
    def missing_candles(self) -> int:
        return sum(g.missing for g in self.gaps)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "rows": self.rows,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "gap_count": len(self.gaps),
            "missing_candles": self.missing_candles,
            "gaps": [g.as_dict() for g in self.gaps],
        }

    def scalars(self) -> dict:
        """as_dict without the list of gaps (KFP metadata holds flat values)."""
        return {k: v for k, v in self.as_dict().items() if k != "gaps"}


def archive_paths(raw_dir: Path, *, symbol: str, interval: str) -> list[Path]:
    """The symbol's kline zips in raw_dir, in date order (monthly and daily alike)."""
    pattern = re.compile(
        rf"^{re.escape(symbol)}-{re.escape(interval)}-(\d{{4}}-\d{{2}}(?:-\d{{2}})?)\.zip$"
    )
    dated = []
    for path in raw_dir.glob("*.zip"):
        match = pattern.match(path.name)
        if match:
            dated.append((match.group(1), path))
    return [path for _, path in sorted(dated)]


def build_candles(raw_dir: Path, params: DataParams) -> tuple[pd.DataFrame, CandleReport]:
    """Parses and validates every archive of params.symbol/interval in raw_dir (a symbol's
    folder, data/raw/<symbol>), within start..end.

    Raises:
        CandleDataError: no archives, or a file that breaks the schema or the candle rules,
            or two files that overlap; the message names the file and the row.
    """
    paths = archive_paths(raw_dir, symbol=params.symbol, interval=params.interval)
    if not paths:
        raise CandleDataError(
            str(raw_dir),
            f"no {params.symbol} {params.interval} archives; run `make data` (klinecast ingest) first",
        )
    frames = []
    for path in paths:
        csv = read_archive(path.read_bytes(), source=path.name)
        frame = parse_klines(csv, source=path.name, interval=params.interval_delta)
        if frames and frame.index[0] <= frames[-1][1].index[-1]:
            previous = frames[-1][0]
            raise CandleDataError(
                path.name,
                f"its first candle {frame.index[0]} overlaps {previous}, which ends at "
                f"{frames[-1][1].index[-1]}",
                row=1,
            )
        frames.append((path.name, frame))
    candles = pd.concat([f for _, f in frames])
    start = pd.Timestamp(params.start, tz="UTC")
    candles = candles[candles.index >= start]
    if params.end is not None:
        candles = candles[candles.index < pd.Timestamp(params.end + dt.timedelta(days=1), tz="UTC")]
    if candles.empty:
        raise CandleDataError(
            str(raw_dir), f"no candles between data.start {params.start} and data.end {params.end}"
        )
    report = CandleReport(
        files=len(paths),
        rows=len(candles),
        first=candles.index[0],
        last=candles.index[-1],
        gaps=tuple(find_gaps(candles.index, interval=params.interval_delta)),
    )
    return candles, report
