"""Fold counts and edge cases, no leakage (label timing per fold, the purge for multi-hour labels,
and poisoned test-period candles that must not change predictions), fee and slippage arithmetic
and before/after-cost metrics against hand-computed examples, the baselines (the trend rule by
hand, decided once a day, without look-ahead; the volatility target's exposure; the baselines
each side declares), a skipped fold held flat and counted, the rule's book carried across folds,
determinism.
"""

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from klinecast.config import SEED_INDICATORS, BacktestParams
from klinecast.errors import KlinecastError
from klinecast.research import baselines
from klinecast.research.backtest import (
    strategy_metrics,
    strategy_returns,
    walk_forward,
    walk_forward_folds,
)
from klinecast.research.features import compute_features, horizon_labels
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import SEED_RULE, StrategyRule, positions
from tests.support.candle_factory import synthetic_candles

HOUR = dt.timedelta(hours=1)
T0 = pd.Timestamp("2021-01-01", tz="UTC")
SMALL = HyperParams(20, 2, 0.1, 0.8, 0.8, 0, 10)


def hourly(days: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=days * 24, freq="1h")


@pytest.mark.parametrize(
    ("days", "train_days", "step_days", "expected"),
    [
        (100, 30, 10, 7),  # test windows tile days 30..100
        (100, 30, 30, 3),  # the last window is shorter (days 90..100)
        (40, 30, 10, 1),
        (30, 30, 10, 0),  # nothing left to test
        (100, 90, 7, 2),
    ],
)
def test_fold_count(days, train_days, step_days, expected):
    index = hourly(days)
    folds = list(
        walk_forward_folds(
            index,
            test_start=T0 + pd.Timedelta(days=train_days),
            test_end=index[-1] + pd.Timedelta(hours=1),
            train_hours=train_days * 24,
            step_hours=step_days * 24,
        )
    )
    assert len(folds) == expected


def test_folds_slide_by_step_with_fixed_train_size_and_never_leak():
    index = hourly(120)
    folds = folds_over(index, start_day=30, end_day=120, train_days=30, step_days=7)
    tested = np.concatenate([np.arange(120 * 24)[f.test_rows] for f in folds])
    assert (np.diff(tested) == 1).all() and tested[0] == 30 * 24  # test windows tile, no overlap
    for fold in folds:
        train, test = index[fold.train_rows], index[fold.test_rows]
        assert len(train) == 30 * 24
        assert train[-1] < test[0]
        # The last training label is the direction of candle train[-1] + 1h, which closes at
        # train[-1] + 2h: known when the first test row's candle closes and its prediction is made.
        last_label_known = train[-1] + 2 * HOUR
        first_prediction = test[0] + HOUR
        assert last_label_known <= first_prediction
        # and no training label is about a candle the test period predicts
        assert train[-1] + HOUR <= test[0]
    starts = [f.test_start for f in folds]
    assert all(b - a == pd.Timedelta(days=7) for a, b in zip(starts, starts[1:], strict=False))


def test_folds_skip_windows_inside_a_data_gap():
    index = hourly(60)
    holey = index[(index < T0 + pd.Timedelta(days=40)) | (index >= T0 + pd.Timedelta(days=50))]
    folds = list(
        walk_forward_folds(
            holey,
            test_start=T0 + pd.Timedelta(days=30),
            test_end=T0 + pd.Timedelta(days=60),
            train_hours=30 * 24,
            step_hours=10 * 24,
        )
    )
    assert [f.test_start for f in folds] == [T0 + pd.Timedelta(days=30), T0 + pd.Timedelta(days=50)]
    assert [f.number for f in folds] == [0, 1]


def folds_over(index, *, start_day: int, end_day: int, train_days: int, step_days: int, **kw):
    """walk_forward_folds over index, days counted from T0."""
    return list(
        walk_forward_folds(
            index,
            test_start=T0 + pd.Timedelta(days=start_day),
            test_end=T0 + pd.Timedelta(days=end_day),
            train_hours=train_days * 24,
            step_hours=step_days * 24,
            **kw,
        )
    )


@pytest.mark.parametrize("horizon", [1, 2, 6, 24])
def test_purged_folds_train_on_no_label_that_reaches_past_the_first_prediction(horizon):
    index = hourly(90)
    folds = folds_over(
        index, start_day=30, end_day=90, train_days=30, step_days=10, horizon_hours=horizon
    )
    assert len(folds) == 6
    for fold in folds:
        train, test = index[fold.train_rows], index[fold.test_rows]
        # a label h candles ahead uses candles up to t + h; the newest of them must be no later
        # than candle test[0], which has closed when the first test prediction is made
        assert train[-1] + horizon * HOUR <= test[0]
        assert train[-1] + horizon * HOUR == test[0]  # and no more is purged than that
        assert len(train) == 30 * 24 - (horizon - 1)


@pytest.mark.parametrize("bad", [(0, 24), (24, 0), (-1, 5)])
def test_fold_window_lengths_must_be_positive(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        list(
            walk_forward_folds(
                hourly(5),
                test_start=T0,
                test_end=T0 + pd.Timedelta(days=5),
                train_hours=bad[0],
                step_hours=bad[1],
            )
        )


def test_fee_arithmetic_by_hand():
    positions = np.array([1, 1, -1, 0, 0, 1])
    returns = np.array([0.01, -0.02, 0.03, 0.05, -0.01, 0.02])
    fee = 0.001
    expected = [
        0.01 - 0.001,  # enter long: one side
        -0.02,  # hold
        -0.03 - 0.002,  # flip long -> short: two sides
        0.0 - 0.001,  # close the short
        0.0,  # flat
        0.02 - 0.001 - 0.001,  # enter long, then closed at the end
    ]
    np.testing.assert_allclose(strategy_returns(positions, returns, cost=fee), expected)


def test_buy_and_hold_pays_two_fees_in_total():
    returns = np.array([0.1, -0.05, 0.02])
    got = strategy_returns(np.ones(3), returns, cost=0.001)
    assert got.sum() == pytest.approx(returns.sum() - 0.002)


def test_metrics_by_hand():
    positions = np.array([1, 1, 1, 1])
    returns = np.array([0.1, -0.5, 0.2, 0.0])
    labels = (returns > 0).astype(float)
    m = strategy_metrics(positions, returns, fee=0.0)
    assert m.cumulative_return == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert m.max_drawdown == pytest.approx(-0.5)
    assert m.accuracy == pytest.approx(0.5)  # long 4 hours, 2 went up (a 0 return is "not up")
    assert (m.accuracy_low, m.accuracy_high) == pytest.approx((0.15, 0.85), abs=0.01)  # Wilson
    assert m.trades == 2 and m.exposure == 1.0 and m.hours == 4 and m.hours_in_market == 4
    assert m.mean_holding_hours == 4 and m.turnover == 2
    assert m.roc_auc is None and m.log_loss is None and labels.sum() == 2


def test_the_hit_rate_treats_both_sides_alike():
    """A short is right when the hour fell; an unchanged close is right for neither side."""
    returns = np.array([-0.1, 0.0, 0.2, 0.0, 0.1])
    m = strategy_metrics(np.array([-1, -1, -1, 1, 0]), returns, fee=0.0)
    assert m.hours_in_market == 4 and m.accuracy == pytest.approx(1 / 4)


def test_before_and_after_fees_turnover_and_holding_by_hand():
    pos = np.array([1, 1, 0, -1, -1, -1, 1])
    returns = np.array([0.01, 0.02, 0.03, -0.01, -0.02, 0.01, 0.05])
    m = strategy_metrics(pos, returns, fee=0.001)
    assert m.return_before_fees == pytest.approx(1.01 * 1.02 * 1.01 * 1.02 * 0.99 * 1.05 - 1)
    assert m.turnover == 1 + 1 + 1 + 2 + 1  # enter, leave, enter short, flip, final close
    assert m.trades == 5 and m.fees_paid == pytest.approx(0.006)
    assert m.cumulative_return == pytest.approx(
        np.prod(1 + strategy_returns(pos, returns, cost=0.001)) - 1
    )
    assert m.mean_holding_hours == pytest.approx((2 + 3 + 1) / 3)
    assert m.exposure == pytest.approx(6 / 7)


def test_probability_metrics_need_probabilities():
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    proba = np.array([0.9, 0.2, 0.8, 0.3])
    m = strategy_metrics(
        positions(proba, SEED_RULE)[0],
        np.array([0.01, -0.01, 0.01, -0.01]),
        fee=0.0,
        proba=proba,
        labels=labels,
    )
    assert m.roc_auc == 1.0 and m.accuracy == 1.0 and m.classifier_accuracy == 1.0
    assert m.log_loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.8, 0.7])))


def baseline_rows(index: pd.DatetimeIndex, next_returns: np.ndarray) -> pd.DataFrame:
    close = 100 * np.cumprod(np.concatenate([[1.0], 1 + next_returns[:-1]]))
    return pd.DataFrame({"close": close, "next_return": next_returns}, index=index)


def test_naive_baselines():
    index = hourly(1)[:6].delete(3)  # hour 3 missing
    next_returns = np.array([0.01, -0.02, 0.03, 0.04, -0.05])
    params = BacktestParams(coin_flip_seed=1)
    pos = baselines.positions(
        baseline_rows(index, next_returns), index, params=params, interval=HOUR
    )
    assert set(pos) == set(baselines.names(params))
    assert pos["buy_and_hold"].tolist() == [1] * 5
    assert pos["always_short"].tolist() == [-1] * 5
    # momentum follows the candle that just closed; flat at the start and after the gap
    assert pos["momentum"].tolist() == [0, 1, -1, 0, 1]
    again = baselines.positions(
        baseline_rows(index, next_returns), index, params=params, interval=HOUR
    )["coin_flip"]
    assert pos["coin_flip"].tolist() == again.tolist() and set(again) <= {-1, 1}


def test_trend_rule_by_hand_decides_once_a_day_on_closed_candles():
    """Long when the close is above its 2-day average, decided when the 00:00 candle closes."""
    index = hourly(6)
    close = np.concatenate([np.full(48, 100.0), np.full(24, 90.0), np.linspace(110, 130, 72)])
    rows = pd.DataFrame({"close": close, "next_return": np.zeros(len(index))}, index=index)
    params = BacktestParams(trend_days=(2,), vol_lookback_days=2)
    pos = baselines.positions(rows, index, params=params, interval=HOUR)["trend_2d"]
    # the row opened at 23:00 closes at 00:00: the decisions are taken there and held a day
    decided = np.flatnonzero((index + HOUR).hour == 0)
    assert (np.diff(np.flatnonzero(np.diff(pos) != 0) + 1) % 24 == 0).all()
    average = rows["close"].rolling("2D", min_periods=43).mean()
    for row in decided:
        expected = float(close[row] > average.iloc[row]) if average.notna().iloc[row] else 0.0
        assert pos[row] == expected
        assert (pos[row : row + 24] == expected).all()
    assert pos[: decided[0]].tolist() == [0.0] * decided[0]  # flat before the first decision
    assert pos[-1] == 1.0  # the rise is above the average
    assert pos[decided[2]] == 0.0  # the day at 90 is below it


def test_trend_rule_has_no_look_ahead():
    """Poison every candle after an hour: the rule's positions up to that hour do not move."""
    index = hourly(40)
    rng = np.random.default_rng(3)
    returns = rng.normal(0, 0.01, len(index))
    rows = baseline_rows(index, returns)
    params = BacktestParams(trend_days=(5, 10), vol_lookback_days=5)
    clean = baselines.positions(rows, index, params=params, interval=HOUR)
    cut = 30 * 24 + 5
    poisoned = rows.copy()
    poisoned.iloc[cut + 1 :, 0] *= 3.0  # closes after row `cut` (decided at its close)
    poisoned.iloc[cut:, 1] = 0.5  # and the returns they make
    dirty = baselines.positions(poisoned, index, params=params, interval=HOUR)
    for name in ("trend_5d", "trend_10d", "vol_target"):
        np.testing.assert_array_equal(dirty[name][: cut + 1], clean[name][: cut + 1])
        assert not np.array_equal(dirty[name], clean[name])  # the poison did reach later rows


def test_vol_target_scales_exposure_down_and_never_above_one():
    index = hourly(30)
    rng = np.random.default_rng(1)
    calm = baseline_rows(index, rng.normal(0, 0.001, len(index)))  # ~9 % a year: capped at 1
    wild = baseline_rows(index, rng.normal(0, 0.02, len(index)))  # ~190 % a year
    params = BacktestParams(vol_target=0.4, vol_lookback_days=5)
    calm_pos = baselines.positions(calm, index, params=params, interval=HOUR)["vol_target"]
    wild_pos = baselines.positions(wild, index, params=params, interval=HOUR)["vol_target"]
    late = slice(10 * 24, None)
    assert (calm_pos[late] == 1.0).all()
    assert 0.1 < wild_pos[late].mean() < 0.35 and wild_pos.max() <= 1.0


@pytest.mark.parametrize(("side", "short"), [("long_only", False), ("long_short", True)])
def test_declared_baselines_are_those_the_side_could_hold(side, short):
    params = BacktestParams()
    found = baselines.declared(side, params)
    assert {"buy_and_hold", "vol_target", *(f"trend_{n}d" for n in params.trend_days)} <= set(found)
    assert ("always_short" in found) is short
    assert "momentum" not in found and "coin_flip" not in found


def synthetic_features(days: int) -> pd.DataFrame:
    candles = synthetic_candles(24 * days)
    return compute_features(candles, indicators=SEED_INDICATORS, interval=HOUR).frame


def run(
    frame,
    *,
    start_day: int,
    end_day: int,
    step_days: int,
    fee: float = 0.0,
    rule: StrategyRule = SEED_RULE,
    horizon: int = 1,
    look_back_days: int = SMALL.look_back_days,
    **kwargs,
):
    """walk_forward with SMALL hyperparameters, days counted from T0."""
    hp = dataclasses.replace(SMALL, look_back_days=look_back_days)
    return walk_forward(
        frame,
        candidate=Candidate(hp, rule, horizon),
        feature_names=SEED_INDICATORS,
        test_start=T0 + pd.Timedelta(days=start_day),
        test_end=T0 + pd.Timedelta(days=end_day),
        backtest=BacktestParams(step_days=step_days, fee=fee, slippage_bps=0.0),
        interval=HOUR,
        **kwargs,
    )


def test_walk_forward_end_to_end_on_synthetic_candles():
    frame = synthetic_features(60)
    seen = []
    result = run(
        frame,
        start_day=20,
        end_day=60,
        step_days=10,
        fee=0.001,
        after_fold=lambda fold, returns, market: seen.append(np.prod(1 + returns) - 1),
    )
    assert result.folds == 4 == len(seen)
    p = result.predictions
    assert p.index[0] == T0 + pd.Timedelta(days=20) and p["prob_up"].between(0, 1).all()
    assert seen[-1] == pytest.approx(result.model.cumulative_return)
    assert p["fold"].tolist() == sorted(p["fold"]) and set(p["fold"]) == {0, 1, 2, 3}
    assert set(result.baselines) == set(baselines.names(BacktestParams()))
    again = run(frame, start_day=20, end_day=60, step_days=10, fee=0.001)
    pd.testing.assert_frame_equal(result.predictions, again.predictions)  # deterministic


def test_training_never_sees_test_rows():
    """Poison every test-period label: predictions must not change."""
    frame = synthetic_features(50)
    clean = run(frame, start_day=20, end_day=30, step_days=10)
    poisoned = frame.copy()
    test_rows = poisoned.index >= T0 + pd.Timedelta(days=20)
    poisoned.loc[test_rows, "label"] = 1.0 - poisoned.loc[test_rows, "label"]
    np.testing.assert_array_equal(
        run(poisoned, start_day=20, end_day=30, step_days=10).predictions["prob_up"],
        clean.predictions["prob_up"],
    )


@pytest.mark.parametrize("horizon", [3, 12])
def test_no_training_label_uses_a_test_period_candle_with_multi_hour_labels(horizon):
    """Poison every candle after test_start (the returns and labels they make): the purged
    training rows do not see it, so the predictions do not move."""
    frame = synthetic_features(50)
    clean = run(frame, start_day=20, end_day=30, step_days=10, horizon=horizon)
    poisoned = frame.copy()
    after = poisoned.index >= T0 + pd.Timedelta(days=20)
    poisoned.loc[after, "next_return"] = -poisoned.loc[after, "next_return"] * 3
    poisoned.loc[after, "label"] = 1.0 - poisoned.loc[after, "label"]
    changed = horizon_labels(poisoned, horizon=horizon, interval=HOUR)
    original = horizon_labels(frame, horizon=horizon, interval=HOUR)
    before = frame.index < T0 + pd.Timedelta(days=20)
    assert (changed[before] != original[before]).sum() > 0  # the unpurged rows' labels did change
    np.testing.assert_array_equal(
        run(poisoned, start_day=20, end_day=30, step_days=10, horizon=horizon).predictions[
            "prob_up"
        ],
        clean.predictions["prob_up"],
    )


def test_the_rule_carries_its_book_across_folds_and_the_seed_rule_is_reproduced():
    frame = synthetic_features(60)
    seed = run(frame, start_day=20, end_day=60, step_days=10)
    p = seed.predictions
    expected = np.where(p["prob_up"] > 0.5, 1, np.where(p["prob_up"] < 0.5, -1, 0))
    assert p["position"].tolist() == expected.tolist()  # the seed's flip-every-hour rule
    held = StrategyRule("long_only", 0.02, 0.01, 6)
    result = run(frame, start_day=20, end_day=60, step_days=10, rule=held)
    again, _ = positions(result.predictions["prob_up"].to_numpy(), held)
    assert result.predictions["position"].tolist() == again.tolist()  # one pass over all folds
    assert (result.predictions["position"] >= 0).all()
    assert result.model.trades < seed.model.trades


def test_look_back_longer_than_the_data_is_a_clear_error():
    with pytest.raises(KlinecastError, match="look_back_days=10 needs features from 2020-12-28"):
        run(synthetic_features(20), start_day=6, end_day=20, step_days=5)


def test_a_fold_skipped_for_want_of_training_rows_is_flat_and_counted():
    """A 10-day hole in the data and 5-day sliding windows: the fold right after the hole has
    test rows but nothing to train on. Its hours are held flat, unpredicted, and counted (they
    once held uninitialised memory)."""
    frame = synthetic_features(60)
    hole = (frame.index >= T0 + pd.Timedelta(days=30)) & (frame.index < T0 + pd.Timedelta(days=40))
    frame = frame[~hole]
    result = run(frame, start_day=20, end_day=60, step_days=5, look_back_days=5)
    p = result.predictions
    skipped = p.index[
        (p.index >= T0 + pd.Timedelta(days=40)) & (p.index < T0 + pd.Timedelta(days=45))
    ]
    assert result.skipped_hours == len(skipped) > 0
    assert (p.loc[skipped, "position"] == 0).all() and p.loc[skipped, "prob_up"].isna().all()
    assert (p.loc[skipped, "fold"] == -1).all() and (p.loc[skipped, "strategy_return"] == 0).all()
    traded = p.drop(skipped)
    assert traded["prob_up"].notna().all() and (traded["fold"] >= 0).all()
    assert np.isfinite(result.model.cumulative_return) and np.isfinite(result.model.log_loss)


def test_a_skipped_leading_fold_is_held_flat_not_dropped_from_the_span():
    """The hole ends where the span starts: the first fold has test hours but nothing in its
    5-day window to train on. Its hours are in the span, flat and counted, as a later skipped
    fold's are (they were once dropped, so the span started five days late)."""
    frame = synthetic_features(60)
    hole = (frame.index >= T0 + pd.Timedelta(days=12)) & (frame.index < T0 + pd.Timedelta(days=20))
    result = run(frame[~hole], start_day=20, end_day=40, step_days=5, look_back_days=5)
    p = result.predictions
    assert p.index[0] == T0 + pd.Timedelta(days=20)
    first = p.index < T0 + pd.Timedelta(days=25)
    assert result.skipped_hours == first.sum() > 0
    assert (p.loc[first, "position"] == 0).all() and (p.loc[first, "fold"] == -1).all()
    assert (p.loc[~first, "fold"] >= 0).all()


def test_slippage_is_paid_beside_the_fee_on_every_change():
    pos = np.array([1, 1, -1, 0])
    returns = np.array([0.01, 0.02, -0.03, 0.01])
    with_slippage = strategy_metrics(pos, returns, fee=0.001, slippage=0.0002)
    fee_only = strategy_metrics(pos, returns, fee=0.001)
    assert with_slippage.turnover == 1 + 2 + 1
    assert with_slippage.fees_paid == pytest.approx(0.004)
    assert with_slippage.slippage_paid == pytest.approx(0.0008)
    assert with_slippage.cumulative_return == pytest.approx(
        np.prod(1 + strategy_returns(pos, returns, cost=0.0012)) - 1
    )
    assert with_slippage.cumulative_return < fee_only.cumulative_return
    assert with_slippage.return_before_fees == fee_only.return_before_fees
