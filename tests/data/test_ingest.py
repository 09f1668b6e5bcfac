import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from klinecast.config import DataParams
from klinecast.data.archives import ArchiveRef
from klinecast.data.ingest import ingest
from klinecast.errors import KlinecastError
from klinecast.retries import RetrySettings
from tests.support.archive_server import ArchiveServer
from tests.support.candle_factory import csv_bytes, kline_rows, synthetic_candles, zip_bytes
from tests.support.paths import MIRROR_MONTHLY, MIRROR_TODAY

D = dt.date
FAST_RETRY = RetrySettings(attempts=3, backoff_s=0.01, timeout_s=0.5)


def run(
    base_url, raw_dir, *, start=dt.date(2021, 10, 1), end=dt.date(2021, 12, 31), today=MIRROR_TODAY
):
    params = DataParams(start=start, end=end)
    return ingest(
        params, raw_dir=raw_dir, base_url=base_url, today=today, retry=FAST_RETRY, progress=False
    )


def monthly(label: str) -> str:
    return f"data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-{label}.zip"


def publish(root: Path, ref: ArchiveRef, content: bytes, *, checksum_of: bytes | None = None):
    """Writes an archive and its .CHECKSUM into a data.binance.vision-shaped tree."""
    path = root / ref.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    digest = hashlib.sha256(checksum_of if checksum_of is not None else content).hexdigest()
    Path(f"{path}.CHECKSUM").write_text(f"{digest}  {ref.filename}\n")


def synthetic_archive(day: dt.date, hours: int) -> bytes:
    candles = synthetic_candles(hours, start=day.isoformat())
    return zip_bytes({"x.csv": csv_bytes(kline_rows(candles))})


def test_whole_mirror_over_http_is_verified_and_identical(mirror_server, tmp_path):
    result = run(mirror_server.url, tmp_path, start=D(2017, 8, 1))
    assert result.planned == len(result.downloaded) == 53
    for name in result.downloaded:
        assert (tmp_path / "BTCUSDT" / name).read_bytes() == (MIRROR_MONTHLY / name).read_bytes()
        assert (tmp_path / "BTCUSDT" / f"{name}.CHECKSUM").is_file()
    assert not list(tmp_path.glob("**/.*"))  # no temporary files left behind


def test_second_run_downloads_nothing(mirror_server, tmp_path):
    run(mirror_server.url, tmp_path)
    mirror_server.requests.clear()
    result = run(mirror_server.url, tmp_path)
    assert result.downloaded == [] and len(result.already_verified) == 3
    # only the lookup of the symbol's listing: small .CHECKSUM files, no archive
    assert mirror_server.requests and all(r.endswith(".CHECKSUM") for r in mirror_server.requests)


def test_a_damaged_local_copy_is_downloaded_again(mirror_server, tmp_path):
    run(mirror_server.url, tmp_path)
    (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-11.zip").write_bytes(b"damaged")
    result = run(mirror_server.url, tmp_path)
    assert result.downloaded == ["BTCUSDT-1h-2021-11.zip"]
    assert (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-11.zip").read_bytes() == (
        MIRROR_MONTHLY / "BTCUSDT-1h-2021-11.zip"
    ).read_bytes()


def test_local_directory_works_as_base_url(mirror, tmp_path):
    result = run(str(mirror), tmp_path / "raw")
    assert len(result.downloaded) == 3
    result = run(f"file://{mirror}", tmp_path / "raw2")
    assert len(result.downloaded) == 3


def test_checksum_mismatch_is_rejected_and_good_data_kept(mirror_server, tmp_path):
    run(mirror_server.url, tmp_path, end=D(2021, 11, 30))
    good = (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-11.zip").read_bytes()
    mirror_server.fail(monthly("2021-12"), b"PK not the real archive")
    with pytest.raises(
        KlinecastError,
        match=r"(?s)1 of 1 archive\(s\) failed.*BTCUSDT-1h-2021-12.zip: sha256 mismatch",
    ):
        run(mirror_server.url, tmp_path)
    assert not (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-12.zip").exists()
    assert (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-11.zip").read_bytes() == good


def test_corrupt_zip_with_matching_checksum_is_rejected(tmp_path):
    root = tmp_path / "site"
    ref = ArchiveRef("monthly", D(2021, 1, 1), "BTCUSDT", "1h")
    content = synthetic_archive(ref.day, 744)
    publish(root, ref, content[: len(content) // 2])
    with pytest.raises(KlinecastError, match="BTCUSDT-1h-2021-01.zip: not a readable zip"):
        run(str(root), tmp_path / "raw", start=D(2021, 1, 1), end=D(2021, 1, 31))
    assert not (tmp_path / "raw" / "BTCUSDT" / "BTCUSDT-1h-2021-01.zip").exists()


@pytest.mark.parametrize("members", [{}, {"a.csv": b"1", "b.csv": b"2"}])
def test_zip_with_zero_or_two_members_is_rejected(tmp_path, members):
    root = tmp_path / "site"
    ref = ArchiveRef("monthly", D(2021, 1, 1), "BTCUSDT", "1h")
    publish(root, ref, zip_bytes(members))
    with pytest.raises(KlinecastError, match=f"holds {len(members)} members"):
        run(str(root), tmp_path / "raw", start=D(2021, 1, 1), end=D(2021, 1, 31))


def test_http_404_is_not_retried_and_says_what_to_check(mirror_server, tmp_path):
    with pytest.raises(
        KlinecastError,
        match=r"BTCUSDT: the source has no 1h archives of BTCUSDT up to 2017-01 \(no .*2017-01.zip"
        r".CHECKSUM\); check data.symbols, and data.end against the symbol's listing",
    ):
        run(mirror_server.url, tmp_path, start=D(2017, 1, 1), end=D(2017, 1, 31))
    assert len(mirror_server.requests) == 1


def test_a_month_missing_after_the_listing_is_an_error_naming_it(mirror_server, tmp_path):
    mirror_server.fail(monthly("2021-11"), 404)
    with pytest.raises(
        KlinecastError, match=r"not found \(HTTP 404\).*2021-11.zip.*check data.symbols"
    ):
        run(mirror_server.url, tmp_path)
    assert (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-12.zip").is_file()  # the others are kept


def symbols_run(base_url, raw_dir, symbols):
    params = DataParams(symbols=symbols, start=D(2020, 11, 1), end=D(2021, 2, 28))
    return ingest(
        params, raw_dir=raw_dir, base_url=base_url, today=MIRROR_TODAY, retry=FAST_RETRY,
        progress=False,
    )  # fmt: skip


def test_several_symbols_each_get_a_folder_and_a_later_listing_starts_there(mirror_server, tmp_path):
    result = symbols_run(mirror_server.url, tmp_path, ("BTCUSDT", "ETHUSDT"))
    assert result.listed_later == {"ETHUSDT": "2021-01"}
    assert sorted(p.name for p in (tmp_path / "ETHUSDT").glob("*.zip")) == [
        "ETHUSDT-1h-2021-01.zip", "ETHUSDT-1h-2021-02.zip",
    ]  # fmt: skip
    assert len(list((tmp_path / "BTCUSDT").glob("*.zip"))) == 4


def test_a_symbol_the_source_lacks_fails_before_any_download(mirror_server, tmp_path):
    with pytest.raises(
        KlinecastError,
        match=r"^DOGEUSDT: the source has no 1h archives of DOGEUSDT up to 2021-02 \(no http://"
        r".*/data/spot/monthly/klines/DOGEUSDT/1h/DOGEUSDT-1h-2021-02.zip.CHECKSUM\); check "
        r"data.symbols, and data.end against the symbol's listing. Nothing was downloaded$",
    ):
        symbols_run(mirror_server.url, tmp_path, ("BTCUSDT", "DOGEUSDT"))
    assert not any(r.endswith(".zip") for r in mirror_server.requests)
    assert not list(tmp_path.glob("**/*.zip"))


def test_archives_an_earlier_version_kept_flat_are_adopted_not_downloaded(mirror_server, tmp_path):
    run(mirror_server.url, tmp_path)
    for path in (tmp_path / "BTCUSDT").iterdir():
        path.rename(tmp_path / path.name)
    mirror_server.requests.clear()
    result = run(mirror_server.url, tmp_path)
    assert len(result.already_verified) == 3 and result.downloaded == []
    assert len(list((tmp_path / "BTCUSDT").glob("*.zip"))) == 3


def test_http_500_is_retried_then_succeeds(mirror_server, tmp_path):
    mirror_server.fail(monthly("2021-12"), 500, 503)
    result = run(mirror_server.url, tmp_path)
    assert "BTCUSDT-1h-2021-12.zip" in result.downloaded
    assert mirror_server.requests.count("/" + monthly("2021-12")) == 3


def test_persistent_http_500_gives_up_with_a_clear_error(mirror_server, tmp_path):
    mirror_server.fail(monthly("2021-12"), 500, 500, 500)
    with pytest.raises(KlinecastError, match=r"2021-12.zip: HTTP 500 \(gave up after 3 attempt"):
        run(mirror_server.url, tmp_path)
    assert len(list(tmp_path.glob("BTCUSDT/*.zip"))) == 2  # the other months were kept


def test_timeouts_are_retried_then_reported(mirror_server, tmp_path):
    mirror_server.fail(monthly("2021-12"), "stall", "stall", "stall")
    with pytest.raises(
        KlinecastError, match=r"2021-12.zip: timed out after 0.5 s \(gave up after 3"
    ):
        run(mirror_server.url, tmp_path)


def test_truncated_transfer_is_retried(mirror_server, tmp_path):
    mirror_server.fail(monthly("2021-12"), "truncate")
    result = run(mirror_server.url, tmp_path)
    assert "BTCUSDT-1h-2021-12.zip" in result.downloaded
    assert (tmp_path / "BTCUSDT" / "BTCUSDT-1h-2021-12.zip").read_bytes() == (
        MIRROR_MONTHLY / "BTCUSDT-1h-2021-12.zip"
    ).read_bytes()


def test_a_month_that_does_not_exist_yet_is_a_clear_error(mirror_server, tmp_path):
    with pytest.raises(KlinecastError, match="data.end 2022-02-28 has not closed yet"):
        run(mirror_server.url, tmp_path, end=D(2022, 2, 28))


def test_current_month_comes_as_daily_archives_and_newest_may_be_unpublished(tmp_path):
    root = tmp_path / "site"
    today = D(2026, 11, 5)
    for day in (D(2026, 11, 1), D(2026, 11, 2), D(2026, 11, 3)):  # the 4th is not out yet
        publish(root, ArchiveRef("daily", day, "BTCUSDT", "1h"), synthetic_archive(day, 24))
    with ArchiveServer(root) as server:
        result = run(server.url, tmp_path / "raw", start=D(2026, 11, 1), end=None, today=today)
    assert sorted(result.downloaded) == [f"BTCUSDT-1h-2026-11-0{d}.zip" for d in (1, 2, 3)]
    assert result.not_yet_published == ["BTCUSDT-1h-2026-11-04.zip"]


def test_an_old_missing_daily_archive_is_an_error(tmp_path):
    root = tmp_path / "site"
    publish(
        root,
        ArchiveRef("daily", D(2026, 11, 2), "BTCUSDT", "1h"),
        synthetic_archive(D(2026, 11, 2), 24),
    )
    with pytest.raises(KlinecastError, match="2026-11-01.zip.CHECKSUM"):
        run(
            str(root),
            tmp_path / "raw",
            start=D(2026, 11, 1),
            end=D(2026, 11, 2),
            today=D(2026, 11, 20),
        )


def test_dailies_are_pruned_once_their_month_is_complete(tmp_path):
    root = tmp_path / "site"
    raw = tmp_path / "raw"
    for day in (D(2026, 10, 29), D(2026, 10, 30)):
        publish(root, ArchiveRef("daily", day, "BTCUSDT", "1h"), synthetic_archive(day, 24))
    # On 2026-10-31 October is the current month: its closed days come as daily archives.
    run(str(root), raw, start=D(2026, 10, 29), end=None, today=D(2026, 10, 31))
    assert len(list(raw.glob("BTCUSDT/*-2026-10-??.zip"))) == 2
    publish(
        root,
        ArchiveRef("monthly", D(2026, 10, 1), "BTCUSDT", "1h"),
        synthetic_archive(D(2026, 10, 1), 744),
    )
    result = run(str(root), raw, start=D(2026, 10, 1), end=D(2026, 10, 31), today=D(2026, 11, 10))
    assert result.downloaded == ["BTCUSDT-1h-2026-10.zip"]
    assert result.pruned == ["BTCUSDT-1h-2026-10-29.zip", "BTCUSDT-1h-2026-10-30.zip"]
    assert sorted(p.name for p in (raw / "BTCUSDT").iterdir()) == [
        "BTCUSDT-1h-2026-10.zip",
        "BTCUSDT-1h-2026-10.zip.CHECKSUM",
    ]


def test_mirror_candles_match_a_plain_read(mirror_candles):
    # Cross-check the parser against an independent pandas read of one mirror month.
    import zipfile

    with zipfile.ZipFile(MIRROR_MONTHLY / "BTCUSDT-1h-2020-03.zip") as archive:
        plain = pd.read_csv(archive.open(archive.namelist()[0]), header=None)
    index = pd.to_datetime(plain[0], unit="ms", utc=True)
    month = mirror_candles.loc[index]
    assert (month["close"].to_numpy() == plain[4].to_numpy()).all()
    assert (month["trades"].to_numpy() == plain[8].to_numpy()).all()
