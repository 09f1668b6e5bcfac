import datetime as dt

import pytest

from klinecast.data.archives import ArchiveRef, plan_archives
from klinecast.errors import KlinecastError

D = dt.date


def plan(start, end, today):
    return plan_archives(symbol="BTCUSDT", interval="1h", start=start, end=end, today=today)


def test_relpath_follows_data_binance_vision_layout():
    ref = ArchiveRef("monthly", D(2018, 12, 1), "BTCUSDT", "1h")
    assert ref.relpath == "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2018-12.zip"
    assert ref.checksum_relpath.endswith("BTCUSDT-1h-2018-12.zip.CHECKSUM")
    daily = ArchiveRef("daily", D(2026, 11, 3), "BTCUSDT", "1h")
    assert daily.relpath == "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-11-03.zip"


def test_monthly_through_last_complete_month_then_daily_for_current_month():
    refs = plan(D(2026, 8, 20), None, D(2026, 11, 4))
    assert [r.label for r in refs] == [
        "2026-08",
        "2026-09",
        "2026-10",
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ]


@pytest.mark.parametrize(
    ("end", "labels"),
    [
        (D(2021, 12, 31), ["2021-11", "2021-12"]),
        (D(2021, 12, 5), ["2021-11", "2021-12"]),  # a complete month comes whole
        (D(2021, 11, 30), ["2021-11"]),
    ],
)
def test_end_limits_the_months(end, labels):
    assert [r.label for r in plan(D(2021, 11, 1), end, D(2026, 1, 1))] == labels


def test_first_day_of_month_has_no_daily_archive_yet():
    refs = plan(D(2026, 10, 1), None, D(2026, 11, 1))
    assert [r.label for r in refs] == ["2026-10"]


@pytest.mark.parametrize("end", [D(2026, 11, 21), D(2027, 1, 31)])
def test_a_day_that_has_not_closed_is_a_clear_error(end):
    with pytest.raises(KlinecastError, match="has not closed yet.*2026-11-20"):
        plan(D(2026, 1, 1), end, D(2026, 11, 21))


def test_start_after_end_is_an_error():
    with pytest.raises(KlinecastError, match="after the last day"):
        plan(D(2026, 11, 25), None, D(2026, 11, 21))
