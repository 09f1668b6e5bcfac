"""The pooled model (tune.pooling: pooled) and the cross-asset features (features.cross_asset):
comparable features, one booster per fold for every symbol, purging across symbols, no
look-ahead in the reference's columns, and a reproducible pooled study."""

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from klinecast.config import FeatureParams, ParamsError, params_from_mapping
from klinecast.errors import KlinecastError
from klinecast.research import training, tuning
from klinecast.research.backtest import walk_forward
from klinecast.research.features import (
    CLOSE,
    LABEL,
    NEXT_RETURN,
    compute_features,
    symbol_features,
)
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.pooled import Pool, walk_forward_pooled
from klinecast.research.strategy import SEED_RULE
from tests.support.candle_factory import synthetic_candles
from tests.support.model_fixtures import HOURLY_INDICATORS, small_params

HOUR = dt.timedelta(hours=1)
CANDIDATE = Candidate(HyperParams(20, 2, 0.1, 0.8, 0.8, 0, 10), SEED_RULE, 4)
CROSS = FeatureParams(
    indicators=HOURLY_INDICATORS, min_history=540, cross_asset=("log_return_1", "rvol_24")
)


def features(seed: int, *, start: str = "2021-01-01", days: int = 60) -> pd.DataFrame:
    candles = synthetic_candles(24 * days, start=start, seed=seed)
    return compute_features(candles, indicators=HOURLY_INDICATORS, interval=HOUR).frame


def pooled(frames, **kwargs):
    return walk_forward_pooled(
        frames,
        candidate=CANDIDATE,
        feature_names=HOURLY_INDICATORS,
        test_start=pd.Timestamp("2021-02-01", tz="UTC"),
        test_end=pd.Timestamp("2021-03-01", tz="UTC"),
        backtest=small_params().backtest,
        interval=HOUR,
        seed=7,
        nthread=1,
        **kwargs,
    )


def test_every_catalogued_family_reads_the_same_on_any_price_and_volume_scale():
    """What makes rows of different pairs comparable: scaling one pair's prices by 1,000 and its
    volumes by 1/1,000 leaves each of its features as it was."""
    every = (
        "ma_ratio_10", "ema_ratio_10", "rsi_14", "mfi_14", "roc_10", "natr_14", "willr_14",
        "cci_14", "adx_14", "log_return_24", "rvol_24", "taker_buy_24", "volume_z_24",
        "range_pos_24", "drawdown_48", "rally_48", "volume_ratio_48", "hour_sin", "dow_cos",
    )  # fmt: skip
    candles = synthetic_candles(24 * 30, seed=5)
    scaled = candles.copy()
    for column in ("open", "high", "low", "close"):
        scaled[column] *= 1000.0
    for column in [c for c in candles.columns if "volume" in c]:
        scaled[column] /= 1000.0
    one = compute_features(candles, indicators=every, interval=HOUR).frame
    other = compute_features(scaled, indicators=every, interval=HOUR).frame
    assert len(one) > 500
    np.testing.assert_allclose(other[list(every)], one[list(every)], rtol=1e-6, atol=1e-6)


def test_the_pooled_walk_forward_fits_one_booster_per_fold_for_every_symbol():
    """Whichever order the symbols come in, each trades the same probabilities; a symbol listed
    later joins from its first row."""
    frames = {
        "BTCUSDT": features(1),
        "ETHUSDT": features(2),
        "SOLUSDT": features(3, start="2021-02-10", days=19),
    }
    results = pooled(frames)
    again = pooled(dict(reversed(list(frames.items()))))
    assert sorted(results) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    for symbol in frames:
        pd.testing.assert_frame_equal(results[symbol].predictions, again[symbol].predictions)
    late = results["SOLUSDT"].predictions
    assert late.index[0] >= pd.Timestamp("2021-02-10", tz="UTC") + pd.Timedelta(days=1)
    assert late["prob_up"].notna().all()  # the others trained its first fold
    # the pooled model is not one symbol's own model
    own = walk_forward(
        frames["BTCUSDT"], candidate=CANDIDATE, feature_names=HOURLY_INDICATORS,
        test_start=pd.Timestamp("2021-02-01", tz="UTC"),
        test_end=pd.Timestamp("2021-03-01", tz="UTC"),
        backtest=small_params().backtest, interval=HOUR, seed=7, nthread=1,
    )  # fmt: skip
    assert not np.allclose(own.predictions["prob_up"], results["BTCUSDT"].predictions["prob_up"])


@pytest.mark.parametrize("anchored", [False, True])
def test_a_pool_of_one_symbol_walks_forward_as_that_symbol_alone(anchored):
    """One fold schedule and one purge (`backtest.walk_forward_folds`): pooled over one symbol,
    with a gap in its rows, the walk-forward is the symbol's own, hour for hour."""
    candles = synthetic_candles(24 * 60, start="2021-01-01", seed=1).drop(
        pd.date_range("2021-02-10", periods=24 * 5, freq="1h", tz="UTC")
    )
    frame = compute_features(candles, indicators=HOURLY_INDICATORS, interval=HOUR).frame
    candidate = dataclasses.replace(
        CANDIDATE, hp=dataclasses.replace(CANDIDATE.hp, anchored=anchored)
    )
    settings = dict(
        candidate=candidate, feature_names=HOURLY_INDICATORS,
        test_start=pd.Timestamp("2021-02-01", tz="UTC"),
        test_end=pd.Timestamp("2021-03-01", tz="UTC"),
        backtest=small_params().backtest, interval=HOUR, seed=7, nthread=1,
    )  # fmt: skip
    own = walk_forward(frame, **settings)
    (one,) = walk_forward_pooled({"BTCUSDT": frame}, **settings).values()
    pd.testing.assert_frame_equal(one.predictions, own.predictions)
    assert (one.folds, one.skipped_hours) == (own.folds, own.skipped_hours)


def test_labels_that_reach_into_a_test_window_are_purged_for_every_symbol():
    """Rewriting every symbol's returns from the first test hour on changes the labels of the
    h - 1 rows before it, which no fold may train on: the first fold's probabilities stay."""
    frames = {"BTCUSDT": features(1), "ETHUSDT": features(2)}
    first_test = pd.Timestamp("2021-02-01", tz="UTC")
    step_end = first_test + pd.Timedelta(days=small_params().backtest.step_days)
    poisoned = {}
    for symbol, frame in frames.items():
        frame = frame.copy()
        later = frame.index >= first_test
        frame.loc[later, NEXT_RETURN] = -frame.loc[later, NEXT_RETURN]
        frame.loc[later, LABEL] = 1.0 - frame.loc[later, LABEL]
        poisoned[symbol] = frame
    clean, dirty = pooled(frames), pooled(poisoned)
    for symbol in frames:
        a = clean[symbol].predictions["prob_up"]
        b = dirty[symbol].predictions["prob_up"]
        first_fold = a.index < step_end
        np.testing.assert_array_equal(a[first_fold], b[first_fold])
        assert not np.array_equal(a[~first_fold], b[~first_fold])  # later folds did learn them


def test_cross_asset_columns_use_only_the_reference_candles_closed_by_the_row():
    mine = synthetic_candles(24 * 40, seed=11)
    reference = synthetic_candles(24 * 40, seed=12)
    full = symbol_features(mine, CROSS, interval=HOUR, reference_candles=reference).frame
    assert list(full.columns) == [*CROSS.names, LABEL, NEXT_RETURN, CLOSE]
    assert CROSS.cross_asset_columns == ("btcusdt_log_return_1", "btcusdt_rvol_24")
    cut = full.index[len(full) // 2]
    # the reference's future rewritten: every row up to the cut is unchanged
    rewritten = reference.copy()
    later = rewritten.index > cut
    rewritten.loc[later, ["open", "high", "low", "close"]] *= 1.5
    again = symbol_features(mine, CROSS, interval=HOUR, reference_candles=rewritten).frame
    columns = list(CROSS.cross_asset_columns)
    pd.testing.assert_frame_equal(again.loc[:cut, columns], full.loc[:cut, columns])
    assert not again.loc[cut:, columns].iloc[1:].equals(full.loc[cut:, columns].iloc[1:])
    # row t holds the reference's own indicators at t
    theirs = compute_features(reference, indicators=CROSS.cross_asset, interval=HOUR).frame
    np.testing.assert_array_equal(
        full.loc[cut, columns].to_numpy(), theirs.loc[cut, list(CROSS.cross_asset)].to_numpy()
    )


def test_an_hour_the_reference_lacks_is_dropped_and_counted():
    mine = synthetic_candles(24 * 40, seed=11)
    reference = synthetic_candles(24 * 40, seed=12).drop(
        pd.date_range("2021-01-20", periods=3, freq="1h", tz="UTC")
    )
    alone = symbol_features(mine, dataclasses.replace(CROSS, cross_asset=()), interval=HOUR)
    joined = symbol_features(mine, CROSS, interval=HOUR, reference_candles=reference)
    lost = len(alone.frame) - len(joined.frame)
    assert lost >= 3
    assert joined.dropped_after_gaps == alone.dropped_after_gaps + lost
    with pytest.raises(KlinecastError, match=r"features.cross_asset needs BTCUSDT's candles"):
        symbol_features(mine, CROSS, interval=HOUR)


def test_the_pooled_final_model_is_the_same_booster_whichever_symbol_asks():
    params = small_params()
    pool = {"BTCUSDT": features(1, days=120), "ETHUSDT": features(2, days=120)}
    one = training.train_final(pool["BTCUSDT"], params, CANDIDATE, pool=pool)
    other = training.train_final(
        pool["ETHUSDT"], params, CANDIDATE, pool=dict(reversed(pool.items()))
    )
    assert one.booster.save_raw("json") == other.booster.save_raw("json")
    alone = training.train_final(pool["BTCUSDT"], params, CANDIDATE)
    assert one.rows == 2 * alone.rows
    assert one.booster.save_raw("json") != alone.booster.save_raw("json")


def test_a_pooled_study_is_one_for_every_symbol_and_reproducible(tmp_path):
    params = small_params()
    paths = {}
    for seed, symbol in ((1, "BTCUSDT"), (2, "ETHUSDT")):
        paths[symbol] = tmp_path / f"{symbol}.parquet"
        features(seed, days=120).to_parquet(paths[symbol])
    pool = Pool({s: str(p) for s, p in paths.items()}, {"BTCUSDT": 0.5, "ETHUSDT": 0.5})
    studies = []
    for run in ("a", "b"):
        storage = f"sqlite:///{tmp_path / run}.db"
        study = tuning.tune(
            features_path=paths["BTCUSDT"], params=params, storage_url=storage, n_trials=3,
            pool=pool,
        )  # fmt: skip
        studies.append(study)
        # the other symbol's tune finds the same study complete
        again = tuning.tune(
            features_path=paths["ETHUSDT"], params=params, storage_url=storage, n_trials=3,
            pool=pool,
        )  # fmt: skip
        assert again.study_name == study.study_name
        assert len(again.trials) == 3
    a, b = studies
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert a.best_trial.user_attrs["pooled"] == ["BTCUSDT", "ETHUSDT"]
    own = tuning.study_name(params, data_version=pool.digest())
    assert a.study_name != own
    # a symbol's own study in the same process scores that symbol alone, not the pool
    alone = tuning.tune(
        features_path=paths["ETHUSDT"], params=params, storage_url=f"sqlite:///{tmp_path}/c.db",
        n_trials=2,
    )  # fmt: skip
    assert all("pooled" not in t.user_attrs for t in alone.trials)


def test_pooling_and_cross_asset_params_are_checked():
    with pytest.raises(
        ParamsError, match=r"tune.pooling: expected one of \['per_symbol', 'pooled'\], got 'shared'"
    ):
        params_from_mapping({"tune": {"pooling": "shared"}})
    with pytest.raises(
        ParamsError,
        match=r"features.reference: BTCUSDT is not in data.symbols \(ETHUSDT, SOLUSDT\)",
    ):
        params_from_mapping(
            {
                "data": {"symbols": ["ETHUSDT", "SOLUSDT"]},
                "features": {"cross_asset": ["log_return_1"]},
            }
        )
    with pytest.raises(
        ParamsError, match=r"features.reference: BTCUSDT is not in data.symbols \(ETHUSDT\)"
    ):
        params_from_mapping(
            {"data": {"symbols": ["ETHUSDT"]}, "features": {"cross_asset": ["log_return_1"]}}
        )
    with pytest.raises(ParamsError, match=r"features.cross_asset: unknown indicator 'close'"):
        params_from_mapping({"features": {"cross_asset": ["close"]}})


def test_a_symbol_listed_after_the_in_sample_span_is_in_the_pooled_study_as_it_is_later(
    tmp_path,
):
    """Tuning pools every symbol, as evaluate and train do: one listed after the span brings no
    row and no trade to the search, and the study scores as it would without it."""
    params = small_params()
    paths = {}
    for seed, symbol, start in ((1, "BTCUSDT", "2021-01-01"), (3, "SOLUSDT", "2021-04-05")):
        paths[symbol] = tmp_path / f"{symbol}.parquet"
        features(seed, start=start, days=120 if symbol == "BTCUSDT" else 20).to_parquet(
            paths[symbol]
        )
    both = Pool({s: str(p) for s, p in paths.items()}, {"BTCUSDT": 0.5, "SOLUSDT": 0.5})
    assert set(tuning.pooled_in_sample(both, params)) == {"BTCUSDT", "SOLUSDT"}
    assert tuning.pooled_in_sample(both, params)["SOLUSDT"].empty
    study = tuning.tune(
        features_path=paths["BTCUSDT"], params=params, storage_url=f"sqlite:///{tmp_path}/p.db",
        n_trials=2, pool=both,
    )  # fmt: skip
    assert study.best_trial.user_attrs["pooled"] == ["BTCUSDT"]  # the only one with results
