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
from klinecast.data.archives import ArchiveRef, plan_archives
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
    """Downloads every planned archive that data/raw does not already hold verified.

    Each zip's sha256 is checked against its .CHECKSUM before it is written, and it is
    written with its .CHECKSUM beside it via rename, so data/raw only ever holds verified
    archives. Archives that fail are reported together at the end; the good ones are kept.

    Args:
        today: the current UTC date (decides which months are complete).
        base_url: where the archives are (default: params.base_url).
        progress: show a progress bar; None shows it only on a terminal.

    Raises:
        KlinecastError: some archives could not be fetched or verified (all are listed).
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    for leftover in raw_dir.glob(".*.part"):
        leftover.unlink()
    plan = plan_archives(
        symbol=params.symbol,
        interval=params.interval,
        start=params.start,
        end=params.end,
        today=today,
    )
    result = IngestResult(planned=len(plan))
    missing = []
    for ref in plan:
        if is_verified(raw_dir, ref):
            result.already_verified.append(ref.filename)
        else:
            missing.append(ref)
    source = ArchiveSource(base_url or params.base_url, retry=retry)
    newest_day = today - dt.timedelta(days=PUBLICATION_LAG_DAYS)
    failures: list[str] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(
            total=len(missing), unit="archive", desc="ingest", disable=_tqdm_disable(progress)
        ) as bar,
    ):
        futures = {pool.submit(_fetch_one, source, ref, raw_dir): ref for ref in missing}
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
                        f"{exc}. The archive does not exist: check data.symbol, "
                        "data.interval and data.start (before the listing date?)"
                    )
            except KlinecastError as exc:
                failures.append(str(exc))
    result.pruned = _prune_covered_dailies(raw_dir, params)
    if failures:
        listed = "\n  ".join(sorted(failures))
        raise KlinecastError(
            f"{len(failures)} of {len(missing)} archive(s) failed; the {len(result.downloaded)} "
            f"downloaded and {len(result.already_verified)} already verified are kept:\n  {listed}"
        )
    return result


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


def _prune_covered_dailies(raw_dir: Path, params: DataParams) -> list[str]:
    """Removes daily archives whose month is now held as a verified monthly archive.

    Without this a month that closed would hold every candle twice.
    """
    prefix = f"{params.symbol}-{params.interval}-"
    months = {
        p.name[len(prefix) : len(prefix) + 7]
        for p in raw_dir.glob(f"{prefix}????-??.zip")
        if Path(f"{p}.CHECKSUM").is_file()
    }
    pruned = []
    for daily in sorted(raw_dir.glob(f"{prefix}????-??-??.zip")):
        if daily.name[len(prefix) : len(prefix) + 7] in months:
            daily.unlink()
            Path(f"{daily}.CHECKSUM").unlink(missing_ok=True)
            pruned.append(daily.name)
    return pruned


def _tqdm_disable(progress: bool | None) -> bool | None:
    # tqdm's disable=None means "only on a terminal".
    return None if progress is None else not progress
