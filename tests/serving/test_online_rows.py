"""The rows a sync writes: only those with min_history contiguous candles behind them."""

import dataclasses

import pandas as pd

from klinecast.config import Params
from klinecast.research.features import compute_features
from klinecast.serving.feature_sync import complete_rows
from tests.support.candle_factory import synthetic_candles


def test_rows_right_after_a_gap_are_held_back_until_the_history_is_whole():
    base = Params()
    params = dataclasses.replace(
        base, features=dataclasses.replace(base.features, min_history=100)
    )
    candles = synthetic_candles(400, seed=5)
    candles = candles.drop(candles.index[250:260])  # a ten-hour outage
    first_new = candles.index[0]
    rows = complete_rows(candles, params, first_new=first_new)
    after = candles.index[250]  # the first candle after the outage
    kept_after_gap = rows.index[rows.index >= after]
    # 100 candles of history: the first kept row is the 100th candle after the outage
    assert kept_after_gap[0] == after + pd.Timedelta(hours=99)
    before = rows.index[rows.index < after]
    assert before[0] == candles.index[99] and before[-1] == candles.index[249]
    # and each kept row equals what training computes on the whole frame
    full = compute_features(
        candles, indicators=params.features.indicators, interval=params.data.interval_delta
    ).frame
    pd.testing.assert_frame_equal(rows, full.loc[rows.index])
    assert len(complete_rows(candles, params, first_new=after)) == len(kept_after_gap)
