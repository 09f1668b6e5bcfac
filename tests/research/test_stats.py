"""The statistics that tell an edge from luck, against known answers.

The Wilson interval against statsmodels, the probabilistic Sharpe against its formula, the
deflated Sharpe's luck bar against a Monte Carlo of the best of N trials, the deflated Sharpe in
sample against out of sample (a true Sharpe of 2 passes about half the time on four in-sample
years, one time in seven on five months), and the bootstrap p-value on series with and without
an edge.
"""

import math

import numpy as np
import pytest
from scipy import stats as sp

from klinecast.research import stats


@pytest.mark.parametrize(("successes", "n"), [(81, 263), (1, 10), (550, 1000), (3, 3)])
def test_wilson_interval_agrees_with_statsmodels(successes, n):
    from statsmodels.stats.proportion import proportion_confint

    expected = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert stats.wilson_interval(successes, n) == pytest.approx(expected, abs=1e-6)


def test_wilson_interval_edges():
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


def test_probabilistic_sharpe_of_normal_returns_matches_the_formula():
    rng = np.random.default_rng(1)
    returns = rng.normal(0.001, 0.01, 5000)
    ratio = returns.mean() / returns.std(ddof=1)
    skew, kurtosis = sp.skew(returns), sp.kurtosis(returns, fisher=False)
    expected = sp.norm.cdf(
        ratio * math.sqrt(4999) / math.sqrt(1 - skew * ratio + (kurtosis - 1) / 4 * ratio**2)
    )
    assert stats.probabilistic_sharpe(returns) == pytest.approx(expected)
    assert stats.probabilistic_sharpe(returns) > 0.99
    assert stats.probabilistic_sharpe(-returns) < 0.01
    assert stats.probabilistic_sharpe(np.zeros(100)) == 0.5  # never trades: a coin toss


def test_more_trials_raise_the_luck_bar_and_lower_the_deflated_sharpe():
    rng = np.random.default_rng(2)
    returns = rng.normal(0.0005, 0.01, 3000)
    bars = [stats.expected_max_sharpe(trials=n, sharpe_variance=1e-4) for n in (1, 10, 100, 1000)]
    assert bars[0] == 0 and bars == sorted(bars) and bars[-1] > bars[1]
    # the bar approximates the expected maximum of N unskilled trials' Sharpe ratios
    maxima = rng.normal(size=(20_000, 100)).max(axis=1) * 0.5  # 100 trials, sd 0.5
    bar = stats.expected_max_sharpe(trials=100, sharpe_variance=0.25)
    assert bar == pytest.approx(maxima.mean(), rel=0.02)
    moments = stats.sharpe_moments(returns)
    deflated = [stats.deflated_sharpe(moments, trials=n, sharpe_variance=1e-4) for n in (1, 100)]
    assert deflated[0] == pytest.approx(stats.probabilistic_sharpe(returns))
    assert deflated[1] < deflated[0]


def test_sharpe_moments_round_trip_and_match_the_returns():
    rng = np.random.default_rng(4)
    returns = rng.standard_t(4, 2000) * 0.01 + 0.0003
    moments = stats.sharpe_moments(returns)
    assert moments.hours == 2000 and moments.kurtosis > 3  # fat tails: non-excess kurtosis
    assert moments.hourly_sharpe == pytest.approx(returns.mean() / returns.std(ddof=1))
    again = stats.SharpeMoments.from_dict(moments.as_dict() | {"hours": 2000})
    assert again == moments
    assert stats.probabilistic_sharpe_of(moments) == stats.probabilistic_sharpe(returns)


def test_the_deflated_sharpe_on_in_sample_returns_does_not_double_penalise():
    """A strategy with a true annual Sharpe of 2, chosen from 48 trials whose Sharpe spread is
    an unskilled one's. On its four in-sample years (where the DSR belongs) it clears 0.95 about
    half the time; on five out-of-sample months with the same luck bar, the old placement, it
    cleared it about one time in seven."""
    rng = np.random.default_rng(5)
    hourly = 2 / np.sqrt(8760)
    unskilled_variance = 1 / (4 * 8760)  # the spread of Sharpe estimates of trials with none

    def pass_rate(hours: int) -> float:
        passed = 0
        for _ in range(300):
            moments = stats.sharpe_moments(rng.normal(hourly * 0.01, 0.01, hours))
            dsr = stats.deflated_sharpe(moments, trials=48, sharpe_variance=unskilled_variance)
            passed += dsr > 0.95
        return passed / 300

    in_sample, out_of_sample = pass_rate(4 * 8760), pass_rate(3623)
    assert 0.35 < in_sample < 0.7
    assert out_of_sample < 0.25 and in_sample > 2.5 * out_of_sample


def test_largest_p_value_counts_a_nan_as_largest():
    assert stats.largest_p_value({"a": 0.01, "b": 0.2, "c": 0.04}) == "b"
    assert stats.largest_p_value({"a": 0.01, "b": float("nan"), "c": 0.9}) == "b"


def test_bootstrap_p_value_tells_an_edge_from_none():
    rng = np.random.default_rng(3)
    benchmark = rng.normal(0, 0.01, 4000)
    same = benchmark + rng.normal(0, 0.002, 4000)  # no edge
    better = benchmark + rng.normal(0.0005, 0.002, 4000)  # a clear edge
    assert stats.bootstrap_p_value(same, benchmark, reps=500, seed=0) > 0.05
    assert stats.bootstrap_p_value(better, benchmark, reps=500, seed=0) < 0.01
    assert stats.bootstrap_p_value(benchmark, benchmark) == 1.0
    again = stats.bootstrap_p_value(same, benchmark, reps=500, seed=0)
    assert again == stats.bootstrap_p_value(same, benchmark, reps=500, seed=0)  # seeded


def test_a_bootstrap_p_value_is_never_zero():
    """(1 + exceedances) / (1 + resamples): a constant edge and an overwhelming one both get
    the smallest p-value a finite bootstrap can give, not 0."""
    rng = np.random.default_rng(6)
    benchmark = rng.normal(0, 0.01, 2000)
    assert stats.bootstrap_p_value(benchmark + 0.001, benchmark, reps=500) == 1 / 501
    overwhelming = benchmark + rng.normal(0.01, 0.001, 2000)
    assert stats.bootstrap_p_value(overwhelming, benchmark, reps=500, seed=0) == 1 / 501
    assert stats.bootstrap_p_value(benchmark - 0.001, benchmark, reps=500) == 1.0


@pytest.mark.parametrize(("horizon", "expected"), [(1, 5000), (24, 5000 / 24), (168, 5000 / 168)])
def test_overlapping_labels_count_as_the_independent_ones_they_are_worth(horizon, expected):
    assert stats.effective_labels(horizon, 5000) == pytest.approx(expected, rel=0.05)
    uniqueness = stats.label_uniqueness(np.ones(500, dtype=bool), horizon)
    assert uniqueness.max() <= 1 and uniqueness[200:300] == pytest.approx(1 / horizon)


def test_the_accuracy_interval_of_overlapping_labels_covers_chance_as_often_as_it_says():
    """A random walk's 168-hour labels against guesses that know nothing: with the effective
    number of labels the 95 % interval covers 0.5 about 95 % of the time; counting every hour
    as independent it covered 0.5 about a quarter of the time."""
    from klinecast.research.backtest import strategy_metrics

    rng = np.random.default_rng(7)
    hours, horizon, runs = 3000, 168, 300
    covered = naive = 0
    for _ in range(runs):
        steps = rng.normal(0, 0.01, hours + horizon)
        ahead = np.convolve(steps, np.ones(horizon), "valid")[1 : hours + 1]
        labels = (ahead > 0).astype(float)
        guess = np.full(hours, 0.6 if rng.uniform() < 0.5 else 0.4)  # one side all the span
        m = strategy_metrics(
            np.zeros(hours), steps[:hours], fee=0.0, proba=guess, labels=labels,
            horizon_hours=horizon,
        )  # fmt: skip
        covered += m.classifier_accuracy_low <= 0.5 <= m.classifier_accuracy_high
        low, high = stats.wilson_interval(round(m.classifier_accuracy * hours), hours)
        naive += low <= 0.5 <= high
    assert covered / runs > 0.88
    assert naive / runs < 0.5


def test_holm_rejects_step_down_and_never_a_nan():
    decided = stats.holm({"a": 0.01, "b": 0.015, "c": 0.03, "d": math.nan}, alpha=0.05)
    # 0.01 <= 0.05/4, 0.015 <= 0.05/3, 0.03 > 0.05/2: stop
    assert decided == {"a": True, "b": True, "c": False, "d": False}
    assert stats.holm({"a": 0.05}, alpha=0.05) == {"a": True}
    assert stats.holm({}, alpha=0.05) == {}
