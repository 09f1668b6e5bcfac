"""The levers for weak signals: the linear booster (standardised on its training rows, read
on the raw features), the feature choice inside each fit (its training rows only), a bag of
trees per round in one model, and labels weighed by their uniqueness."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from klinecast.research import model
from klinecast.research.backtest import walk_forward
from klinecast.research.features import LABEL, NEXT_RETURN, compute_features
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import SEED_RULE
from tests.support.candle_factory import synthetic_candles
from tests.support.model_fixtures import HOUR, HOURLY_INDICATORS, small_params

HP = HyperParams(40, 3, 0.1, 0.8, 0.8, 0.0, 10)
LINEAR = dataclasses.replace(HP, booster="gblinear", learning_rate=0.5, reg_alpha=0.01)


def signal_and_noise(rows: int = 4000, columns: int = 12, seed: int = 0):
    """Column 7 decides the label (with noise); the others carry nothing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns)).astype(np.float32)
    y = (x[:, 7] + rng.normal(0, 1.0, rows) > 0).astype(np.float32)
    return x, y


def test_the_feature_choice_keeps_the_one_that_carries_the_signal():
    x, y = signal_and_noise()
    keep = model.select_features(x, y, 3, seed=1, nthread=1)
    assert keep.sum() == 3 and keep[7]


def test_a_fit_with_k_features_splits_on_at_most_k_and_reads_them_all():
    x, y = signal_and_noise()
    names = [f"c{i}" for i in range(x.shape[1])]
    booster = model.fit(
        x, y, dataclasses.replace(HP, n_features=2), seed=1, nthread=1, feature_names=names
    )
    used = model.complexity(booster).features_used
    assert "c7" in used and len(used) <= 2
    assert booster.feature_names == names  # serving sends every feature, in order
    every = model.fit(x, y, HP, seed=1, nthread=1, feature_names=names)
    assert len(model.complexity(every).features_used) > 2


def raw_scales(x):
    """The same columns on the scales real features have: an RSI near 50, a return near 0."""
    return (x * np.array([10.0, 0.002, 1.0] * 4, dtype=np.float32) + [50.0, 0.001, 0.0] * 4).astype(
        np.float32
    )


def test_the_linear_booster_reads_raw_features_as_it_was_fitted_on_standardised_ones():
    """The model file reads the raw features (serving sends them), and answers what the same
    linear booster fitted on the standardised columns answers, to float32's rounding."""
    import xgboost as xgb

    x, y = signal_and_noise()
    raw = raw_scales(x)
    names = [f"c{i}" for i in range(x.shape[1])]
    booster = model.fit(raw, y, LINEAR, seed=1, nthread=1, feature_names=names)
    standard = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    reference = xgb.train(
        model.booster_params(LINEAR, seed=1, nthread=1),
        xgb.DMatrix(standard, label=y, feature_names=names),
        num_boost_round=LINEAR.n_estimators,
    )
    expected = reference.predict(xgb.DMatrix(standard, feature_names=names))
    np.testing.assert_allclose(model.predict_proba(booster, raw), expected, atol=1e-6)
    assert booster.feature_names == names
    again = model.fit(raw, y, LINEAR, seed=1, nthread=1, feature_names=names)
    assert again.save_raw("json") == booster.save_raw("json")  # the same bytes


def test_the_linear_booster_s_l1_keeps_the_feature_that_carries_the_signal():
    """One penalty means the same for every feature, whatever its scale: the L1 weight leaves
    the signal's column and drops most of the eleven that carry nothing."""
    x, y = signal_and_noise()
    names = [f"c{i}" for i in range(x.shape[1])]
    sparse = model.fit(raw_scales(x), y, LINEAR, seed=1, nthread=1, feature_names=names)
    shape = model.complexity(sparse)
    assert shape.booster == "gblinear" and shape.splits == 0 and shape.trees == 0
    assert "c7" in shape.features_used and len(shape.features_used) <= 4
    importance = model.feature_importance(sparse, names)
    assert max(importance, key=importance.get) == "c7" and importance["c7"] > 0.8
    assert sum(importance.values()) == pytest.approx(1.0)
    dense = model.fit(
        raw_scales(x), y, dataclasses.replace(LINEAR, reg_alpha=0.0), seed=1, nthread=1,
        feature_names=names,
    )  # fmt: skip
    assert len(model.complexity(dense).features_used) > len(shape.features_used)


def test_the_linear_booster_with_k_features_weighs_at_most_k():
    x, y = signal_and_noise()
    names = [f"c{i}" for i in range(x.shape[1])]
    chosen = dataclasses.replace(LINEAR, n_features=2, reg_alpha=0.0)
    used = model.complexity(model.fit(x, y, chosen, seed=1, nthread=1, feature_names=names))
    assert "c7" in used.features_used and len(used.features_used) <= 2


@pytest.mark.parametrize("hp", [HP, LINEAR], ids=["trees", "linear"])
def test_the_feature_choice_sees_nothing_of_a_test_window(hp):
    """With the choice on, rewriting every label and return from a fold's first test hour on
    leaves the first fold's probabilities as they were: each fit chose its features (and the
    linear booster its standardisation) on its own (purged) training rows."""
    candles = synthetic_candles(24 * 60, seed=4)
    frame = compute_features(candles, indicators=HOURLY_INDICATORS, interval=HOUR).frame
    first_test = frame.index[0] + pd.Timedelta(days=30)
    poisoned = frame.copy()
    later = poisoned.index >= first_test
    poisoned.loc[later, NEXT_RETURN] = -poisoned.loc[later, NEXT_RETURN]
    poisoned.loc[later, LABEL] = 1.0 - poisoned.loc[later, LABEL]
    candidate = Candidate(dataclasses.replace(hp, n_features=3), SEED_RULE, 4)

    def run(features):
        return walk_forward(
            features, candidate=candidate, feature_names=HOURLY_INDICATORS, test_start=first_test,
            test_end=first_test + pd.Timedelta(days=20), backtest=small_params().backtest,
            interval=HOUR, seed=3, nthread=1,
        ).predictions["prob_up"]  # fmt: skip

    clean, dirty = run(frame), run(poisoned)
    first_fold = clean.index < first_test + pd.Timedelta(days=small_params().backtest.step_days)
    np.testing.assert_array_equal(clean[first_fold], dirty[first_fold])
    assert not np.array_equal(clean[~first_fold], dirty[~first_fold])


def test_a_bag_of_trees_per_round_is_one_model():
    x, y = signal_and_noise(rows=2000)
    bagged = model.fit(x, y, dataclasses.replace(HP, parallel_trees=4), seed=1, nthread=1)
    assert model.complexity(bagged).trees == 4 * HP.n_estimators
    proba = model.predict_proba(bagged, x[:50])
    assert ((proba > 0) & (proba < 1)).all()


@pytest.mark.parametrize("horizon", [1, 24])
def test_uniqueness_weights_count_one_market_move_once(horizon):
    index = pd.date_range("2021-01-01", periods=500, freq="1h", tz="UTC")
    index = index.delete(slice(200, 300))  # a gap: the labels around it overlap fewer others
    hp = dataclasses.replace(HP, sample_weights="uniqueness")
    weights = model.training_weights(hp, index, horizon_hours=horizon)
    assert weights.mean() == pytest.approx(1.0)
    if horizon == 1:
        np.testing.assert_allclose(weights, 1.0)
    else:
        assert weights[199] > weights[100] and weights[200] > weights[300]
    assert model.training_weights(HP, index, horizon_hours=horizon) is None  # equal
