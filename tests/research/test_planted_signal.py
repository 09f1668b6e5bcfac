"""The planted series: each shape carries an edge of the strength it claims, in the features it
names, and the power benchmark runs the shipped chain on them.

The claim "the default search finds an edge of this shape and strength this often" is a rate
over many series, each a search of minutes: the power benchmark (`make bench-power`,
docs/research.md) carries it. Here the suite checks the mechanism, as rates over seeds, never
one chosen seed: the shapes' oracles earn what their strengths say and nothing on null series,
and the interaction needs both of its features. (One run of the benchmark's chain takes minutes
on these seven-year series, too long for the suite: the benchmark runs it.)

The planted series of the power benchmark carry the edge their strength says, as rates over five
seeds per shape, and nothing on GARCH-t nulls; the interaction needs both of its features (the
power itself is the benchmark's claim, [docs/research.md](research.md)).
"""

import numpy as np
import pytest
import yaml

from klinecast.research.backtest import strategy_returns
from klinecast.research.features import compute_features
from tests.support.paths import REPO
from tests.support.planted import (
    COST,
    SHAPES,
    null_candles,
    oracle_positions,
    oracle_sharpe,
    shaped_candles,
)

INDICATORS = yaml.safe_load((REPO / "params.yaml").read_text())["features"]["indicators"]
SEEDS = range(5)


def features(candles):
    return compute_features(candles, indicators=INDICATORS, interval=candles.index.freq).frame


@pytest.fixture(scope="module")
def strengths():
    from benchmarks.power import STRENGTHS

    return STRENGTHS


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_carries_the_edge_its_strength_says_over_seeds(shape, strengths):
    """Over five seeds each, the oracle's Sharpe after costs grows with the strength, and at
    the middle strength (about 1.5 on the benchmark's calibration) at least four seeds in five
    make more than 0.8."""
    means = []
    for strength in strengths[shape]:
        sharpes = [
            oracle_sharpe(features(shaped_candles(shape, strength=strength, seed=s)), shape)
            for s in SEEDS
        ]
        means.append(np.mean(sharpes))
        if strength == strengths[shape][1]:
            assert sum(x > 0.8 for x in sharpes) >= 4, sharpes
    assert means == sorted(means) and means[0] > 0.5 and means[-1] > 1.8, means


def test_the_oracles_earn_nothing_on_null_series():
    """GARCH-t nulls, driftless: reading any shape's features earns costs and noise; over five
    seeds no oracle's mean Sharpe is above 0."""
    frames = [features(null_candles(seed=s)) for s in SEEDS]
    for shape in SHAPES:
        assert np.mean([oracle_sharpe(f, shape) for f in frames]) < 0.0
    kurtosis = [f["next_return"].kurt() for f in frames]
    assert min(kurtosis) > 3  # fat tails, as an exchange's hours have


def sharpe_after_costs(frame, position) -> float:
    span = (frame.index >= "2022-01-01") & frame["next_return"].notna()
    returns = strategy_returns(
        np.asarray(position, dtype=float)[span], frame.loc[span, "next_return"].to_numpy(),
        cost=COST,
    )  # fmt: skip
    return float(returns.mean() / returns.std(ddof=1) * np.sqrt(8760))


def test_the_interaction_needs_both_of_its_features():
    """Each feature alone (long when it is above its middle) earns about nothing after costs;
    the two together carry the edge: over five seeds."""
    alone, together = [], []
    for seed in SEEDS:
        frame = features(shaped_candles("interaction", strength=0.016, seed=seed))
        alone.append(sharpe_after_costs(frame, frame["taker_buy_24"] > 0.5))
        alone.append(sharpe_after_costs(frame, frame["volume_ratio_30d"] > 1))
        together.append(sharpe_after_costs(frame, oracle_positions("interaction", frame)))
    assert np.mean(together) > 1.8 and max(alone) < 1 and np.mean(alone) < 0.3, (alone, together)


def test_a_planted_book_holds_the_one_symbol_series_first_then_independent_ones_of_its_edge():
    """The benchmark's books (`--symbols K`, for the pooled model): the first symbol's series
    is the one-symbol run's of the same seed, so the two can be compared series by series; the
    others are series of their own (returns uncorrelated) that carry the same edge."""
    from benchmarks.power import book_seeds, planted_series

    shape, strength = "trailing", 0.005
    book = [planted_series(shape, strength, seed) for seed in book_seeds(1, 3)]
    assert book[0].equals(shaped_candles(shape, strength=strength, seed=1))
    returns = np.log(np.stack([candles["close"].to_numpy() for candles in book])).T
    correlation = np.corrcoef(np.diff(returns, axis=0).T)
    assert np.abs(correlation[np.triu_indices(3, 1)]).max() < 0.05, correlation
    oracles = [
        oracle_sharpe(features(planted_series(shape, strength, each)), shape)
        for seed in (0, 1) for each in book_seeds(seed, 3)
    ]  # fmt: skip
    assert min(oracles) > 0 and np.mean(oracles) > 0.8, oracles
