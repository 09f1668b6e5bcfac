"""The rows a sync writes: only those with min_history candles behind them."""

import dataclasses

import pandas as pd

from klinecast.config import Params
from klinecast.indicators import indicator_lookback
from klinecast.research.features import compute_features
from klinecast.serving.feature_sync import complete_rows
from tests.support.candle_factory import synthetic_candles
from tests.support.model_fixtures import HOURLY_INDICATORS


def test_rows_need_min_history_candles_behind_and_hourly_windows_refill_after_a_gap():
    """min_history candles behind a row (an outage's hours do not count, its candles are
    missing); after a gap the hourly indicators restart, so rows wait for their windows, while
    a day-scale one reaches across it."""
    base = Params()
    indicators = (*HOURLY_INDICATORS, "ma_ratio_2d")
    params = dataclasses.replace(
        base, features=dataclasses.replace(base.features, indicators=indicators, min_history=100)
    )
    candles = synthetic_candles(400, seed=5)
    candles = candles.drop(candles.index[250:260])  # a ten-hour outage
    first_new = candles.index[0]
    rows = complete_rows(candles, params, first_new=first_new)
    after = candles.index[250]  # the first candle after the outage
    kept_after_gap = rows.index[rows.index >= after]
    hourly = max(indicator_lookback(name) for name in HOURLY_INDICATORS)
    assert kept_after_gap[0] == after + pd.Timedelta(hours=hourly - 1)
    before = rows.index[rows.index < after]
    assert before[0] == candles.index[99] and before[-1] == candles.index[249]
    # and each kept row equals what training computes on the whole frame
    full = compute_features(
        candles, indicators=params.features.indicators, interval=params.data.interval_delta
    ).frame
    pd.testing.assert_frame_equal(rows, full.loc[rows.index])
    assert len(complete_rows(candles, params, first_new=after)) == len(kept_after_gap)
