import datetime as dt

import pandas as pd
import pytest

from klinecast.data.candles import find_gaps, parse_klines, read_archive, validate_candles
from klinecast.errors import CandleDataError
from tests.support.candle_factory import csv_bytes, kline_rows, synthetic_candles, zip_bytes

HOUR = dt.timedelta(hours=1)


def parse(content: bytes) -> pd.DataFrame:
    return parse_klines(content, source="X.csv", interval=HOUR)


@pytest.fixture()
def candles():
    return synthetic_candles(48)


def test_parses_into_the_design_schema(candles):
    frame = parse(csv_bytes(kline_rows(candles)))
    assert list(frame.columns) == list(candles.columns)
    assert frame.index.name == "open_time" and str(frame.index.tz) == "UTC"
    pd.testing.assert_frame_equal(frame, candles, check_freq=False, rtol=1e-8)


def test_milliseconds_and_microseconds_land_on_the_same_index(candles):
    ms = parse(csv_bytes(kline_rows(candles)))
    us = parse(csv_bytes(kline_rows(candles, micros=True)))
    pd.testing.assert_frame_equal(ms, us)
    assert ms.index[0] == pd.Timestamp("2021-01-01", tz="UTC")


def test_2025_archives_in_microseconds_parse_like_2024_in_milliseconds():
    dec = kline_rows(synthetic_candles(3, start="2024-12-31 21:00"))
    jan = kline_rows(synthetic_candles(3, start="2025-01-01 00:00"), micros=True)
    a, b = parse(csv_bytes(dec)), parse(csv_bytes(jan))
    assert (b.index[0] - a.index[-1]) == pd.Timedelta(hours=1)


def test_a_header_row_is_skipped(candles):
    with_header = parse(csv_bytes(kline_rows(candles), header=True))
    pd.testing.assert_frame_equal(with_header, parse(csv_bytes(kline_rows(candles))))


def test_row_numbers_count_the_header(candles):
    rows = kline_rows(candles)
    rows[4][4] = "abc"
    with pytest.raises(
        CandleDataError, match=r"X.csv, row 6: column close: non-numeric value 'abc'"
    ):
        parse(csv_bytes(rows, header=True))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (2, "1e", "column high: non-numeric value '1e'"),
        (5, "", "column volume: an empty cell"),
        (0, "nan", "column open_time: non-numeric"),
        (8, "inf", "column trades: non-numeric value 'inf'"),
    ],
)
def test_non_numeric_cells_name_the_row_and_column(candles, column, value, message):
    rows = kline_rows(candles)
    rows[9][column] = value
    with pytest.raises(CandleDataError, match=f"row 10: {message}"):
        parse(csv_bytes(rows))


def test_wrong_column_count_is_an_error(candles):
    rows = kline_rows(candles)
    rows[3].append("1")
    with pytest.raises(CandleDataError, match="expected 12 columns"):
        parse(csv_bytes(rows))
    rows = [r[:11] for r in kline_rows(candles)]
    with pytest.raises(CandleDataError, match="row 1: expected 12 columns, found 11"):
        parse(csv_bytes(rows))
    rows = kline_rows(candles)
    rows[3] = rows[3][:11]
    with pytest.raises(CandleDataError, match="row 4: column ignore: an empty cell"):
        parse(csv_bytes(rows))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"high": 0.5}, "high is below open or close"),
        ({"low": 2.0}, "low is above open or close"),
        ({"open": -1.0, "low": -2.0}, "a price is not positive"),
        ({"volume": -1.0}, "a volume or trade count is negative"),
    ],
)
def test_rows_that_break_candle_rules_are_named(candles, change, message):
    broken = candles.copy()
    for column, factor in change.items():
        broken.iloc[7, broken.columns.get_loc(column)] *= factor
    with pytest.raises(CandleDataError, match=f"X.csv, row 8: {message}"):
        parse(csv_bytes(kline_rows(broken)))


def test_duplicate_timestamp_is_named(candles):
    rows = kline_rows(candles)
    rows.insert(5, rows[4])
    with pytest.raises(CandleDataError, match="row 6: duplicate open_time 2021-01-01 04:00"):
        parse(csv_bytes(rows))


def test_out_of_order_timestamp_is_named(candles):
    rows = kline_rows(candles)
    rows[5], rows[6] = rows[6], rows[5]
    with pytest.raises(CandleDataError, match="row 7: out-of-order open_time"):
        parse(csv_bytes(rows))


def test_misaligned_and_tiny_timestamps_are_errors(candles):
    rows = kline_rows(candles)
    rows[2][0] = str(int(rows[2][0]) + 1)
    with pytest.raises(CandleDataError, match="row 3: open_time .* not on a 1:00:00 boundary"):
        parse(csv_bytes(rows))
    rows = kline_rows(candles)
    rows[0][0] = "1609459200"  # seconds, not ms
    with pytest.raises(CandleDataError, match="row 1: .*neither a millisecond nor a microsecond"):
        parse(csv_bytes(rows))


def test_empty_csv_is_an_error():
    with pytest.raises(CandleDataError, match="holds no candles"):
        parse(b"")


def test_zip_with_one_member_is_read(candles):
    content = csv_bytes(kline_rows(candles))
    assert read_archive(zip_bytes({"A.csv": content}), source="A.zip") == content


@pytest.mark.parametrize("members", [{}, {"A.csv": b"1", "B.csv": b"2"}])
def test_zip_with_zero_or_two_members_is_an_error(members):
    with pytest.raises(CandleDataError, match=f"A.zip: holds {len(members)} members"):
        read_archive(zip_bytes(members), source="A.zip")


def test_truncated_zip_is_an_error(candles):
    content = zip_bytes({"A.csv": csv_bytes(kline_rows(candles))})
    with pytest.raises(CandleDataError, match="A.zip: not a readable zip archive"):
        read_archive(content[: len(content) // 2], source="A.zip")


def test_corrupt_zip_member_fails_its_crc(candles):
    content = bytearray(zip_bytes({"A.csv": csv_bytes(kline_rows(candles)) * 20}))
    content[200] ^= 0xFF  # inside the compressed data
    with pytest.raises(CandleDataError, match="A.zip: not a readable zip archive"):
        read_archive(bytes(content), source="A.zip")


def test_gaps_are_listed_not_filled(candles):
    holey = candles.drop(candles.index[[10, 11, 12, 30]])
    validate_candles(holey, source="X")
    gaps = find_gaps(holey.index, interval=HOUR)
    assert [(g.first.hour, g.last.hour, g.missing) for g in gaps] == [(10, 12, 3), (6, 6, 1)]


def test_validate_accepts_a_clean_frame_as_it_is_and_names_the_first_bad_row(candles):
    before = candles.copy()
    validate_candles(candles, source="X")
    pd.testing.assert_frame_equal(candles, before)  # checked, not repaired
    broken = candles.copy()
    broken.iloc[7, broken.columns.get_loc("high")] = broken["low"].iloc[7] - 1.0
    broken.iloc[20, broken.columns.get_loc("volume")] = -1.0
    with pytest.raises(CandleDataError, match=r"X, row 8: high is below open or close at"):
        validate_candles(broken, source="X")
