"""Statistics that tell an edge from luck.

- `wilson_interval`: a 95 % interval for a hit rate that behaves at small counts and near 0 or 1.
- `probabilistic_sharpe`: the probability that the true Sharpe ratio exceeds a benchmark, given
  the sample's length, skewness and kurtosis (Bailey and López de Prado, 2012).
- `deflated_sharpe`: the same against the Sharpe ratio that the best of N trials would show by
  luck alone, from the trials' own spread (Bailey and López de Prado, 2014). A study that ran
  many trials has to clear a higher bar.
- `bootstrap_p_value`: the p-value that one strategy's hourly returns beat another's, from
  `arch`'s SPA test with the stationary bootstrap (blocks keep the returns' autocorrelation).

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

    Hansen's SPA test from `arch` with one model against the benchmark, studentised, with the
    stationary bootstrap and its optimal mean block length. Identical series get 1.0.
    """
    from arch.bootstrap import SPA, optimal_block_length

    returns = np.asarray(returns, dtype=float)
    benchmark = np.asarray(benchmark, dtype=float)
    difference = returns - benchmark
    if len(difference) < 10 or np.allclose(difference, difference[0]):
        return 1.0 if len(difference) < 10 or difference[0] <= 0 else 0.0
    block = optimal_block_length(difference)["stationary"].iloc[0]
    block = max(1, int(round(block))) if np.isfinite(block) else 1
    spa = SPA(
        -benchmark, -returns[:, None], reps=reps, block_size=block, bootstrap="stationary",
        studentize=True, nested=False, seed=seed,
    )  # fmt: skip
    spa.compute()
    return float(spa.pvalues["consistent"])


def largest_p_value(p_values: dict[str, float]) -> str:
    """The name with the largest p-value, a NaN counting as the largest (a test that could not
    be computed is not evidence); ties go to the last name in sorted order."""
    return max(p_values, key=lambda n: (math.inf if math.isnan(p_values[n]) else p_values[n], n))


def monte_carlo_error(p_value: float, *, reps: int) -> float:
    """The standard error of a bootstrap p-value from `reps` resamples."""
    if not np.isfinite(p_value) or reps < 1:
        return float("nan")
    return math.sqrt(max(p_value * (1 - p_value), 0.0) / reps)
