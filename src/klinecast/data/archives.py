"""The data.binance.vision layout: which kline archives cover a date range, and where they live."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from klinecast.errors import KlinecastError

Period = Literal["monthly", "daily"]


@dataclass(frozen=True, order=True)
class ArchiveRef:
    """One kline archive, e.g. spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2018-12.zip."""

    period: Period
    day: dt.date  # the first day of the month for monthly archives
    symbol: str
    interval: str

    @property
    def label(self) -> str:
        return self.day.strftime("%Y-%m") if self.period == "monthly" else self.day.isoformat()

    @property
    def filename(self) -> str:
        return f"{self.symbol}-{self.interval}-{self.label}.zip"

    @property
    def relpath(self) -> str:
        """Path below the base URL, exactly as data.binance.vision lays it out."""
        return f"data/spot/{self.period}/klines/{self.symbol}/{self.interval}/{self.filename}"

    @property
    def checksum_relpath(self) -> str:
        return self.relpath + ".CHECKSUM"

    def covers(self, day: dt.date) -> bool:
        if self.period == "daily":
            return day == self.day
        return (day.year, day.month) == (self.day.year, self.day.month)


def plan_archives(
    *, symbol: str, interval: str, start: dt.date, end: dt.date | None, today: dt.date
) -> list[ArchiveRef]:
    """Lists the archives that cover start..end, monthly where the month is complete.

    Months that closed before `today` come as monthly archives; the month containing `today`
    comes as daily archives of its closed days (Binance publishes a day's archive after it ends).

    Args:
        end: the last day wanted; None means up to yesterday.
        today: the current UTC date, passed in so that planning stays a pure function.

    Raises:
        KlinecastError: `end` is today or later, so its archive cannot exist yet.
    """
    yesterday = today - dt.timedelta(days=1)
    if end is None:
        end = yesterday
    elif end > yesterday:
        raise KlinecastError(
            f"data.end {end} has not closed yet: the newest archive that can exist is for "
            f"{yesterday} (today is {today} UTC). Set data.end to {yesterday} or earlier, "
            "or to null for everything up to yesterday."
        )
    if start > end:
        raise KlinecastError(f"data.start {start} is after the last day to fetch, {end}")
    current_month = today.replace(day=1)
    refs: list[ArchiveRef] = []
    month = start.replace(day=1)
    while month <= end:
        if month < current_month:
            refs.append(ArchiveRef("monthly", month, symbol, interval))
        else:
            day = max(start, month)
            while day <= end:
                refs.append(ArchiveRef("daily", day, symbol, interval))
                day += dt.timedelta(days=1)
        month = _next_month(month)
    return refs


def symbol_dir(raw_dir: Path, symbol: str) -> Path:
    """Where a symbol's verified archives live: data/raw/<symbol>."""
    return raw_dir / symbol


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
