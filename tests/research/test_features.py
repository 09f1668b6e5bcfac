"""Label, horizon labels, look-ahead (every family, over hours and over days), gaps (day-scale
windows span them, hourly ones restart), day periods, every indicator family (the newer ones
checked by hand), and `min_history` checked on 250 real hours for all 28 default features.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from klinecast.config import DEFAULT_INDICATORS, SEED_INDICATORS, Params
from klinecast.indicators import (
    CALENDAR,
    FAMILIES,
    SHORTEST_PERIOD,
    indicator_lookback,
    parse_indicator,
    required_columns,
)
from klinecast.research.features import compute_features, horizon_labels, measure_min_history
from tests.support.candle_factory import synthetic_candles

HOUR = dt.timedelta(hours=1)
MIN_HISTORY = Params().features.min_history


def shortest_or(family: str, period: int) -> str:
    return f"{family}_{max(period, SHORTEST_PERIOD.get(family, 2))}"


#: Every family over hours (a day's window where it may), over days, and the calendar.
EVERY_FAMILY = (
    tuple(shortest_or(family, 24) for family in sorted(FAMILIES))
    + tuple(f"{family}_3d" for family in sorted(FAMILIES))
    + tuple(sorted(CALENDAR))
)


def features(candles, indicators=SEED_INDICATORS):
    return compute_features(candles, indicators=indicators, interval=HOUR)


def test_seed_features_and_label_columns():
    frame = features(synthetic_candles(300)).frame
    assert list(frame.columns) == [*SEED_INDICATORS, "label", "next_return", "close"]
    assert frame["rsi_14"].between(0, 100).all() and frame["mfi_21"].between(0, 100).all()


def test_ma_ratio_is_the_moving_average_over_close():
    candles = synthetic_candles(100)
    frame = features(candles, ("ma_ratio_5",)).frame
    t = candles.index[50]
    expected = candles["close"].iloc[46:51].mean() / candles["close"].iloc[50]
    assert frame.loc[t, "ma_ratio_5"] == pytest.approx(expected, rel=1e-12)


def test_label_is_the_next_candles_direction():
    candles = synthetic_candles(100)
    frame = features(candles).frame
    close = candles["close"]
    expected = (close.shift(-1) > close).astype(float).loc[frame.index[:-1]]
    np.testing.assert_array_equal(frame["label"].iloc[:-1], expected)
    np.testing.assert_allclose(
        frame["next_return"].iloc[:-1], (close.shift(-1) / close - 1).loc[frame.index[:-1]]
    )
    assert np.isnan(frame["label"].iloc[-1])  # the next candle is not known yet


@pytest.mark.parametrize("indicators", [SEED_INDICATORS, DEFAULT_INDICATORS, EVERY_FAMILY])
def test_no_look_ahead_future_candles_do_not_change_past_features(indicators):
    candles = synthetic_candles(5_200)  # the 200-day average needs 4,800 candles
    base = features(candles, indicators).frame
    t = 5_050
    assert len(base.loc[: candles.index[t]]) > 200  # rows to compare, for every indicator set
    shocked = candles.copy()
    shocked.iloc[t + 1 :, :4] *= 3.0  # every candle after t changes
    shocked.iloc[t + 1 :, 4] *= 10.0
    shocked.iloc[t + 1 :, 7] *= 0.2  # and its taker-buy share
    after = features(shocked, indicators).frame
    cols = list(indicators)
    pd.testing.assert_frame_equal(
        base.loc[: candles.index[t], cols], after.loc[: candles.index[t], cols]
    )
    # Only the label of t, which is about candle t+1, may change.
    pd.testing.assert_series_equal(
        base["label"].loc[: candles.index[t - 1]], after["label"].loc[: candles.index[t - 1]]
    )


def test_rows_whose_window_crosses_a_gap_are_dropped_and_counted():
    candles = synthetic_candles(200)
    holey = candles.drop(candles.index[100:103])  # a 3-hour outage
    result = features(holey)
    longest = max(indicator_lookback(n) for n in SEED_INDICATORS)
    assert result.dropped_at_start == longest - 1
    assert result.dropped_after_gaps == longest - 1
    after_gap = result.frame.loc[candles.index[103] :]
    assert after_gap.index[0] == candles.index[103 + longest - 1]
    # The candle before the gap has no next candle: its label is unknown, not invented.
    assert np.isnan(result.frame.loc[candles.index[99], "label"])
    assert result.unlabeled == 2


def test_after_a_gap_indicators_restart_instead_of_reaching_across():
    candles = synthetic_candles(300)
    holey = candles.drop(candles.index[100:103])
    alone = features(holey.iloc[100:]).frame  # only the candles after the gap
    together = features(holey).frame
    pd.testing.assert_frame_equal(together.loc[alone.index], alone)


def test_too_short_input_gives_no_rows():
    assert features(synthetic_candles(10)).frame.empty


@pytest.mark.parametrize(
    "name", [shortest_or(family, 14) for family in sorted(FAMILIES)] + list(CALENDAR)
)
def test_every_family_computes(name):
    frame = features(synthetic_candles(200), (name,)).frame
    if name.startswith("trend_"):  # its first value waits for a 00:00 UTC decision: the
        # lookback is the most that can take (the window, then up to a day less one candle)
        first = 24 - 1  # these candles start at 00:00: the first decision closes at 00:00 next
        assert len(frame) == 200 - first and 200 - len(frame) < indicator_lookback(name)
    else:
        assert len(frame) == 200 - indicator_lookback(name) + 1
    assert np.isfinite(frame[name]).all()


def test_the_new_families_by_hand():
    candles = synthetic_candles(100)
    names = ("log_return_6", "rvol_6", "taker_buy_6", "volume_z_6", "range_pos_6")
    frame = features(candles, names + tuple(CALENDAR)).frame
    c, t = candles, 60
    row = frame.loc[c.index[t]]
    close, window = c["close"].to_numpy(), slice(t - 5, t + 1)
    assert row["log_return_6"] == pytest.approx(np.log(close[t] / close[t - 6]), rel=1e-9)
    logs = np.log(close[1:] / close[:-1])[t - 6 : t]  # the 6 one-candle returns ending at t
    assert row["rvol_6"] == pytest.approx(np.std(logs), rel=1e-6)
    share = (c["taker_buy_volume"] / c["volume"]).to_numpy()[window]
    assert row["taker_buy_6"] == pytest.approx(share.mean(), rel=1e-9)
    volume = c["volume"].to_numpy()[window]
    assert row["volume_z_6"] == pytest.approx((volume[-1] - volume.mean()) / volume.std(), rel=1e-6)
    low, high = c["low"].to_numpy()[window].min(), c["high"].to_numpy()[window].max()
    assert row["range_pos_6"] == pytest.approx((close[t] - low) / (high - low), rel=1e-9)
    decided = c.index[t] + HOUR  # the row is known when its candle closes
    hour = 2 * np.pi * decided.hour / 24
    day = 2 * np.pi * (decided.dayofweek * 24 + decided.hour) / 168  # Monday 00:00 is 0
    assert (row["hour_sin"], row["hour_cos"]) == pytest.approx((np.sin(hour), np.cos(hour)))
    assert (row["dow_sin"], row["dow_cos"]) == pytest.approx((np.sin(day), np.cos(day)))


def test_taker_buy_features_need_the_taker_volume_column():
    assert required_columns(SEED_INDICATORS) == ("open", "high", "low", "close", "volume")
    assert required_columns(("taker_buy_24",))[-1] == "taker_buy_volume"


@pytest.mark.parametrize("horizon", [1, 3, 24])
def test_horizon_labels_are_the_direction_h_candles_ahead(horizon):
    candles = synthetic_candles(300).drop(synthetic_candles(300).index[150:152])  # a gap
    frame = features(candles).frame
    labels = horizon_labels(frame, horizon=horizon, interval=HOUR)
    close = candles["close"]
    later = close.reindex(frame.index + horizon * HOUR).to_numpy()
    between_known = [
        candles.index.get_loc(t) + horizon < len(candles)
        and candles.index[candles.index.get_loc(t) + horizon] == t + horizon * HOUR
        for t in frame.index
    ]
    expected = np.where(between_known, (later > close.loc[frame.index].to_numpy()), np.nan)
    np.testing.assert_array_equal(labels.to_numpy(), expected.astype(float))
    assert labels.isna().sum() >= horizon  # the last h rows, and those whose h hours cross the gap


def test_min_history_window_equals_full_history_on_real_data(mirror_candles):
    """Serving computes on the last min_history candles; training on full history."""
    stamps = mirror_candles.index
    contiguous = (
        pd.Series(1, index=stamps)
        .groupby((stamps.to_series().diff() != pd.Timedelta(HOUR)).cumsum())
        .cumcount()
    )
    # a converged full-history reference: the longest window and 1,500 candles of its own run
    longest = max(indicator_lookback(n) for n in DEFAULT_INDICATORS)
    eligible = np.flatnonzero(contiguous.to_numpy() >= 1500)
    eligible = eligible[eligible >= longest + 1500]
    rng = np.random.default_rng(7)
    ends = np.sort(rng.choice(eligible, size=250, replace=False))
    full = features(mirror_candles, DEFAULT_INDICATORS).frame
    names = list(DEFAULT_INDICATORS)
    worst = 0.0
    for end in ends:
        reference = full.loc[stamps[end], names].to_numpy()
        window = features(
            mirror_candles.iloc[end - MIN_HISTORY + 1 : end + 1], DEFAULT_INDICATORS
        ).frame
        assert window.index[-1] == stamps[end]
        worst = max(worst, np.max(np.abs(window[names].to_numpy()[-1] - reference)))
        # one hour short of 200 days on the clock (whatever its outages): no row
        short = features(
            mirror_candles.loc[stamps[end] - pd.Timedelta(hours=longest - 2) : stamps[end]],
            DEFAULT_INDICATORS,
        )
        assert stamps[end] not in short.frame.index
    assert worst <= 1e-9


def test_day_scale_indicators_span_gaps_and_hourly_ones_restart():
    """A 3-hour outage: a day-scale window spans it and counts its days on the clock (the
    outage's hours flat at the last close before it), an hourly one restarts after it."""
    candles = synthetic_candles(24 * 12)
    holey = candles.drop(candles.index[150:153])
    closes = candles["close"].to_numpy().copy()
    closes[150:153] = closes[149]  # the outage: flat at the last close
    day_only = features(holey, ("ma_ratio_2d", "log_return_2d"))
    row = day_only.frame.loc[candles.index[160]]  # 8 candles after the outage
    assert row["ma_ratio_2d"] == pytest.approx(closes[113:161].mean() / closes[160], rel=1e-12)
    assert row["log_return_2d"] == pytest.approx(np.log(closes[160] / closes[112]), rel=1e-12)
    assert day_only.dropped_after_gaps == 0
    assert day_only.dropped_at_start == indicator_lookback("log_return_2d") - 1 == 48
    both = features(holey, ("ma_ratio_2d", "rsi_14"))
    assert candles.index[160] not in both.frame.index  # the hourly one is still restarting
    assert candles.index[170] in both.frame.index
    assert both.dropped_after_gaps == indicator_lookback("rsi_14") - 1


def test_day_periods_count_hourly_candles():
    assert parse_indicator("ma_ratio_200d") == ("ma_ratio", 4800)
    assert parse_indicator("log_return_7d") == ("log_return", 168)
    assert indicator_lookback("ma_ratio_200d") == 4800
    with pytest.raises(ValueError, match="at least 48 candles"):
        parse_indicator("volume_ratio_24")


def test_drawdown_rally_and_volume_ratio_by_hand():
    candles = synthetic_candles(200)
    frame = features(candles, ("drawdown_2d", "rally_2d", "volume_ratio_3d")).frame
    t = 150
    row, c = frame.loc[candles.index[t]], candles
    window = slice(t - 47, t + 1)
    close = c["close"].to_numpy()[t]
    assert row["drawdown_2d"] == pytest.approx(close / c["high"].to_numpy()[window].max() - 1)
    assert row["rally_2d"] == pytest.approx(close / c["low"].to_numpy()[window].min() - 1)
    volume = c["volume"].to_numpy()
    assert row["volume_ratio_3d"] == pytest.approx(
        volume[t - 23 : t + 1].mean() / volume[t - 71 : t + 1].mean(), rel=1e-9
    )
    assert row["drawdown_2d"] <= 0 <= row["rally_2d"]


def test_measure_min_history_finds_the_rsi_convergence(mirror_candles):
    measured = measure_min_history(
        mirror_candles, indicators=SEED_INDICATORS, interval=HOUR, samples=100
    )
    assert 480 < measured <= MIN_HISTORY
    # MFI and moving averages are plain window sums: their window is all they need.
    assert (
        measure_min_history(
            mirror_candles, indicators=("mfi_21", "ma_ratio_20"), interval=HOUR, samples=50
        )
        == 22
    )
