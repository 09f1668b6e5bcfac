"""`klinecast ingest`: download verified kline archives into data/raw, incrementally."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from klinecast import atomic
from klinecast.config import DataParams
from klinecast.data.archives import ArchiveRef, plan_archives, symbol_dir
from klinecast.data.candles import read_archive
from klinecast.data.download import ARCHIVE_RETRY, ArchiveSource, parse_checksum, verify_sha256
from klinecast.errors import ArchiveNotFoundError, ChecksumError, KlinecastError
from klinecast.retries import RetrySettings

log = logging.getLogger(__name__)

#: Binance publishes a day's archive some hours after the day ends; a 404 for one of the
#: newest days means "not yet", not "never".
PUBLICATION_LAG_DAYS = 2


@dataclass
class IngestResult:
    planned: int = 0
    downloaded: list[str] = field(default_factory=list)
    already_verified: list[str] = field(default_factory=list)
    not_yet_published: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    #: symbol -> the first month the source holds, for symbols listed after data.start
    listed_later: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """The counts (KFP metadata, the CLI's line)."""
        return {
            "planned": self.planned,
            "downloaded": len(self.downloaded),
            "downloaded_bytes": self.downloaded_bytes,
            "already_verified": len(self.already_verified),
            "not_yet_published": len(self.not_yet_published),
            "pruned": len(self.pruned),
        }


def ingest(
    params: DataParams,
    *,
    raw_dir: Path,
    today: dt.date,
    base_url: str | None = None,
    workers: int = 8,
    retry: RetrySettings = ARCHIVE_RETRY,
    progress: bool | None = None,
) -> IngestResult:
    """Downloads every planned archive of every symbol that data/raw/<symbol> does not
    already hold verified.

    Before any download, each symbol is looked up at the source: a symbol it does not have
    fails the whole run, naming it; a symbol listed after data.start is planned from its
    first month (`IngestResult.listed_later`). Each zip's sha256 is checked against its
    .CHECKSUM before it is written, and it is written with its .CHECKSUM beside it via rename,
    so data/raw only ever holds verified archives. Archives that fail are reported together at
    the end; the good ones are kept.

    Args:
        today: the current UTC date (decides which months are complete).
        base_url: where the archives are (default: params.base_url).
        progress: show a progress bar; None shows it only on a terminal.

    Raises:
        KlinecastError: a symbol the source lacks (nothing is downloaded), or some archives
            could not be fetched or verified (all are listed).
    """
    source = ArchiveSource(base_url or params.base_url, retry=retry)
    plans = {symbol: _plan(params, symbol, today) for symbol in params.symbols}
    result = IngestResult()
    for symbol, plan in plans.items():
        first = listing_month(source, plan)
        if first is None:
            last = [ref for ref in plan if ref.period == "monthly"][-1]  # the one looked up
            raise KlinecastError(
                f"{symbol}: the source has no {params.interval} archives of {symbol} up to "
                f"{last.label} (no {source.url(last.checksum_relpath)}); check "
                "data.symbols, and data.end against the symbol's listing. Nothing was downloaded"
            )
        if first.day > plan[0].day:
            result.listed_later[symbol] = first.label
            plans[symbol] = [ref for ref in plan if ref.day >= first.day]
    missing = []
    for symbol, plan in plans.items():
        folder = symbol_dir(raw_dir, symbol)
        _adopt_flat_archives(raw_dir, folder, symbol)
        for leftover in folder.glob(".*.part"):
            leftover.unlink()
        result.planned += len(plan)
        for ref in plan:
            if is_verified(folder, ref):
                result.already_verified.append(ref.filename)
            else:
                missing.append(ref)
    newest_day = today - dt.timedelta(days=PUBLICATION_LAG_DAYS)
    failures: list[str] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(
            total=len(missing), unit="archive", desc="ingest", disable=_tqdm_disable(progress)
        ) as bar,
    ):
        futures = {
            pool.submit(_fetch_one, source, ref, symbol_dir(raw_dir, ref.symbol)): ref
            for ref in missing
        }
        for future in as_completed(futures):
            ref = futures[future]
            bar.update()
            try:
                result.downloaded_bytes += future.result()
                result.downloaded.append(ref.filename)
            except ArchiveNotFoundError as exc:
                if ref.period == "daily" and ref.day >= newest_day:
                    log.warning("%s is not published yet; skipped", ref.filename)
                    result.not_yet_published.append(ref.filename)
                else:
                    failures.append(
                        f"{exc}. The archive does not exist: check data.symbols, "
                        "data.interval and data.start"
                    )
            except KlinecastError as exc:
                failures.append(str(exc))
    for symbol in params.symbols:
        result.pruned += _prune_covered_dailies(symbol_dir(raw_dir, symbol), symbol, params)
    if failures:
        listed = "\n  ".join(sorted(failures))
        raise KlinecastError(
            f"{len(failures)} of {len(missing)} archive(s) failed; the {len(result.downloaded)} "
            f"downloaded and {len(result.already_verified)} already verified are kept:\n  {listed}"
        )
    return result


def listing_month(source: ArchiveSource, plan: list[ArchiveRef]) -> ArchiveRef | None:
    """The first archive of plan that the source holds, found by bisection on .CHECKSUM
    files (a symbol's archives run without holes from its listing on), or None when the
    source holds not even the last monthly one: it does not have the symbol.

    A plan of daily archives only (a span inside the current month) is taken as it is.
    """
    monthly = [ref for ref in plan if ref.period == "monthly"]
    if not monthly:
        return plan[0]
    if not _has(source, monthly[-1]):
        return None
    low, high = 0, len(monthly) - 1  # monthly[high] exists
    while low < high:
        middle = (low + high) // 2
        if _has(source, monthly[middle]):
            high = middle
        else:
            low = middle + 1
    return monthly[high]


def _has(source: ArchiveSource, ref: ArchiveRef) -> bool:
    try:
        source.fetch(ref.checksum_relpath)
    except ArchiveNotFoundError:
        return False
    return True


def _plan(params: DataParams, symbol: str, today: dt.date) -> list[ArchiveRef]:
    return plan_archives(
        symbol=symbol, interval=params.interval, start=params.start, end=params.end, today=today
    )


def _adopt_flat_archives(raw_dir: Path, folder: Path, symbol: str) -> None:
    """Moves a symbol's archives that an earlier version kept directly in data/raw into
    data/raw/<symbol>, so they are not downloaded again."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in raw_dir.glob(f"{symbol}-*.zip*"):
        if path.is_file():
            path.rename(folder / path.name)


def is_verified(raw_dir: Path, ref: ArchiveRef) -> bool:
    """True when data/raw holds the zip and a .CHECKSUM that it matches."""
    zip_path = raw_dir / ref.filename
    checksum_path = raw_dir / f"{ref.filename}.CHECKSUM"
    if not (zip_path.is_file() and checksum_path.is_file()):
        return False
    try:
        expected = parse_checksum(checksum_path.read_text(), filename=ref.filename)
        verify_sha256(zip_path.read_bytes(), expected=expected, filename=ref.filename)
    except ChecksumError as exc:
        log.warning("%s; downloading it again", exc)
        return False
    return True


def _fetch_one(source: ArchiveSource, ref: ArchiveRef, raw_dir: Path) -> int:
    checksum_text = source.fetch(ref.checksum_relpath).decode("utf-8", errors="replace")
    expected = parse_checksum(checksum_text, filename=ref.filename)
    content = source.fetch(ref.relpath)
    verify_sha256(content, expected=expected, filename=ref.filename)
    read_archive(content, source=ref.filename)  # a corrupt zip with a matching checksum
    atomic.write_bytes(raw_dir / ref.filename, content)
    atomic.write_bytes(raw_dir / f"{ref.filename}.CHECKSUM", checksum_text.encode())
    return len(content)


def _prune_covered_dailies(folder: Path, symbol: str, params: DataParams) -> list[str]:
    """Removes daily archives whose month is now held as a verified monthly archive.

    Without this a month that closed would hold every candle twice.
    """
    prefix = f"{symbol}-{params.interval}-"
    months = {
        p.name[len(prefix) : len(prefix) + 7]
        for p in folder.glob(f"{prefix}????-??.zip")
        if Path(f"{p}.CHECKSUM").is_file()
    }
    pruned = []
    for daily in sorted(folder.glob(f"{prefix}????-??-??.zip")):
        if daily.name[len(prefix) : len(prefix) + 7] in months:
            daily.unlink()
            Path(f"{daily}.CHECKSUM").unlink(missing_ok=True)
            pruned.append(daily.name)
    return pruned


def _tqdm_disable(progress: bool | None) -> bool | None:
    # tqdm's disable=None means "only on a terminal".
    return None if progress is None else not progress
