"""Statistics that tell an edge from luck.

- `wilson_interval`: a 95 % interval for a hit rate that behaves at small counts and near 0 or 1.
- `probabilistic_sharpe`: the probability that the true Sharpe ratio exceeds a benchmark, given
  the sample's length, skewness and kurtosis (Bailey and López de Prado, 2012).
- `deflated_sharpe`: the same against the Sharpe ratio that the best of N trials would show by
  luck alone, from the trials' own spread (Bailey and López de Prado, 2014). A study that ran
  many trials has to clear a higher bar.
- `bootstrap_p_value`: the p-value that one strategy's hourly returns beat another's, from
  `arch`'s SPA test with the stationary bootstrap (blocks keep the returns' autocorrelation).
- `effective_labels`: how many independent labels overlapping multi-hour labels are worth
  (their average uniqueness), for the classifier accuracy's interval.
- `holm`: Holm's step-down decisions over several p-values (the book's symbols' gates).

Sharpe ratios here are per hour (not annualised), as the formulas expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

#: Hours in a year: what annualises an hourly Sharpe ratio or return.
HOURS_PER_YEAR = 24 * 365

EULER_GAMMA = 0.5772156649015329


def wilson_interval(successes: int, n: int, *, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (nan, nan) when n is 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def sharpe(returns: np.ndarray) -> float:
    """Mean over standard deviation of per-period returns; 0 when they do not vary."""
    returns = np.asarray(returns, dtype=float)
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    return float(np.mean(returns)) / std if std > 1e-15 else 0.0


@dataclass(frozen=True)
class SharpeMoments:
    """What the probabilistic Sharpe needs of a return series: its per-period Sharpe, length,
    skewness and (non-excess) kurtosis. A tuning trial keeps these, not its returns."""

    hourly_sharpe: float
    hours: int
    skew: float
    kurtosis: float

    def as_dict(self) -> dict:
        return {
            "hourly_sharpe": self.hourly_sharpe,
            "hourly_skew": self.skew,
            "hourly_kurtosis": self.kurtosis,
        }

    @classmethod
    def from_dict(cls, values: dict) -> SharpeMoments:
        """Raises KeyError for a mapping without them (a trial of an older klinecast)."""
        return cls(
            float(values["hourly_sharpe"]), int(values["hours"]),
            float(values["hourly_skew"]), float(values["hourly_kurtosis"]),
        )  # fmt: skip


def sharpe_moments(returns: np.ndarray) -> SharpeMoments:
    returns = np.asarray(returns, dtype=float)
    if len(returns) > 2 and np.std(returns) > 1e-15:
        skew, kurtosis = float(sp.skew(returns)), float(sp.kurtosis(returns, fisher=False))
    else:  # a strategy that never trades: no shape to correct for
        skew, kurtosis = 0.0, 3.0
    return SharpeMoments(sharpe(returns), len(returns), skew, kurtosis)


def probabilistic_sharpe(returns: np.ndarray, *, benchmark: float = 0.0) -> float:
    """P(true per-period Sharpe > benchmark), with the non-normality of the returns."""
    return probabilistic_sharpe_of(sharpe_moments(returns), benchmark=benchmark)


def probabilistic_sharpe_of(moments: SharpeMoments, *, benchmark: float = 0.0) -> float:
    """probabilistic_sharpe from a series' moments."""
    n, ratio = moments.hours, moments.hourly_sharpe
    if n < 3:
        return float("nan")
    spread = 1 - moments.skew * ratio + (moments.kurtosis - 1) / 4 * ratio**2
    if spread <= 0:
        return float("nan")
    return float(sp.norm.cdf((ratio - benchmark) * math.sqrt(n - 1) / math.sqrt(spread)))


def expected_max_sharpe(*, trials: int, sharpe_variance: float) -> float:
    """The per-period Sharpe that the best of `trials` unskilled trials shows by luck."""
    if trials <= 1 or sharpe_variance <= 0:
        return 0.0
    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * sp.norm.ppf(1 - 1 / trials)
        + EULER_GAMMA * sp.norm.ppf(1 - 1 / (trials * math.e))
    )


def deflated_sharpe(moments: SharpeMoments, *, trials: int, sharpe_variance: float) -> float:
    """The probabilistic Sharpe against the best-of-`trials` luck benchmark: meant for the
    chosen trial's in-sample returns, with the spread of every trial's Sharpe."""
    benchmark = expected_max_sharpe(trials=trials, sharpe_variance=sharpe_variance)
    return probabilistic_sharpe_of(moments, benchmark=benchmark)


def bootstrap_p_value(
    returns: np.ndarray, benchmark: np.ndarray, *, reps: int = 1000, seed: int = 0
) -> float:
    """P-value of "returns do not beat benchmark" on average (hour by hour, same hours).

    Hansen's SPA test from `arch` with one model against the benchmark, the stationary bootstrap
    and its optimal mean block length. The statistic arch compares is the mean difference, not
    a studentised one (arch studentises only the recentring threshold; with one model a
    studentised mean would rank the resamples the same way). The p-value counts the observed
    statistic among the resamples, (1 + exceedances) / (1 + reps), so it is never 0: a finite
    bootstrap cannot tell a p-value below 1 / (1 + reps). Identical series get 1.0.
    """
    from arch.bootstrap import SPA, optimal_block_length

    returns = np.asarray(returns, dtype=float)
    benchmark = np.asarray(benchmark, dtype=float)
    difference = returns - benchmark
    if len(difference) < 10:
        return 1.0
    if np.allclose(difference, difference[0]):
        # every resample has the same mean: it exceeds a positive mean never, another always
        return 1.0 if difference[0] <= 0 else 1.0 / (1 + reps)
    block = optimal_block_length(difference)["stationary"].iloc[0]
    block = max(1, int(round(block))) if np.isfinite(block) else 1
    spa = SPA(
        -benchmark, -returns[:, None], reps=reps, block_size=block, bootstrap="stationary",
        studentize=True, nested=False, seed=seed,
    )  # fmt: skip
    spa.compute()
    exceeding = float(spa.pvalues["consistent"]) * reps
    return (1.0 + round(exceeding)) / (1.0 + reps)


def effective_labels(horizon_hours: int, hours: int) -> float:
    """How many independent labels `hours` consecutive hourly labels of `horizon_hours` each
    are worth: the sum of their uniqueness (López de Prado's average uniqueness: each hour's
    return is shared by the labels that span it, and a label counts 1 / that share on
    average). Overlapping labels at 168 h are worth about hours / 168, not hours; an interval
    on `hours` would be sqrt(168) times too narrow.
    """
    if hours <= 0:
        return 0.0
    return float(label_uniqueness(np.ones(hours, dtype=bool), horizon_hours).sum())


def label_uniqueness(labelled: np.ndarray, horizon_hours: int) -> np.ndarray:
    """Each hour's label's average uniqueness among consecutive hourly labels that each span
    the next `horizon_hours` hours (`labelled` marks the hours with a label; the others count
    for nothing): 1 for one-hour labels, about 1 / h deep inside a run of h-hour labels."""
    labelled = np.asarray(labelled, dtype=bool)
    n, h = len(labelled), int(horizon_hours)
    if h <= 1 or n == 0:
        return labelled.astype(float)
    # concurrency of hour j: the labels i in (j - h, j] that span it
    starts = np.concatenate([[0], np.cumsum(labelled)])
    span_end = np.arange(n) + 1
    concurrency = starts[span_end] - starts[np.maximum(span_end - h, 0)]
    inverse = np.where(concurrency > 0, 1.0 / np.maximum(concurrency, 1), 0.0)
    # label i spans hours i .. i + h - 1 (those inside the series)
    total = np.concatenate([[0.0], np.cumsum(inverse)])
    last = np.minimum(np.arange(n) + h, n)
    uniqueness = (total[last] - total[np.arange(n)]) / (last - np.arange(n))
    return np.where(labelled, uniqueness, 0.0)


def holm(p_values: dict[str, float], *, alpha: float) -> dict[str, bool]:
    """Holm's step-down test over several hypotheses: which are rejected at family-wise error
    alpha. The smallest p-value is held to alpha / m, the next to alpha / (m - 1), ..., and the
    first that fails stops the rest. A NaN p-value is never rejected."""
    order = sorted(p_values, key=lambda n: (math.inf if math.isnan(p_values[n]) else p_values[n], n))
    m = len(order)
    rejected = dict.fromkeys(p_values, False)
    for k, name in enumerate(order):
        if not p_values[name] <= alpha / (m - k):
            break
        rejected[name] = True
    return rejected


def largest_p_value(p_values: dict[str, float]) -> str:
    """The name with the largest p-value, a NaN counting as the largest (a test that could not
    be computed is not evidence); ties go to the last name in sorted order."""
    return max(p_values, key=lambda n: (math.inf if math.isnan(p_values[n]) else p_values[n], n))


def monte_carlo_error(p_value: float, *, reps: int) -> float:
    """The standard error of a bootstrap p-value from `reps` resamples."""
    if not np.isfinite(p_value) or reps < 1:
        return float("nan")
    return math.sqrt(max(p_value * (1 - p_value), 0.0) / reps)
