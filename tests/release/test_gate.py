"""The publish gate: each of its three conditions alone refuses a model, and says why."""

import dataclasses
import math

import pytest

from klinecast.config import PublishParams
from klinecast.release.gate import gate
from klinecast.research.model import Complexity
from tests.support.model_fixtures import scorecard as metrics

PUBLISH = PublishParams()  # buy_and_hold, excess >= 0, p <= 0.05, 50 splits, 3 features, 1 trade
GOOD = Complexity(trees=400, trees_that_split=120, splits=300, features_used=("a", "b", "c"))


def test_a_model_that_meets_every_condition_passes():
    decided = gate(metrics(), GOOD, PUBLISH)
    assert decided.passed
    assert [c.name for c in decided.conditions] == ["excess_return", "p_value", "not_degenerate"]
    assert all(c.held for c in decided.conditions)


@pytest.mark.parametrize(
    ("metric_changes", "complexity", "failed", "detail"),
    [
        ({"excess": -0.001}, GOOD, "excess_return", "-0.10% < +0.00%"),
        ({"p_value": 0.051}, GOOD, "p_value", "(buy_and_hold) 0.051 > 0.05"),
        ({"p_value": math.nan}, GOOD, "p_value", "nan > 0.05"),
        ({}, dataclasses.replace(GOOD, splits=49), "not_degenerate", "49 splits < 50"),
        (
            {},
            dataclasses.replace(GOOD, features_used=("a", "b")),
            "not_degenerate",
            "2 feature(s) used (a, b) < 3",
        ),
        ({"trades": 0}, GOOD, "not_degenerate", "the rule traded 0 time(s) out of sample < 1"),
    ],
)
def test_each_condition_alone_refuses(metric_changes, complexity, failed, detail):
    decided = gate(metrics(**metric_changes), complexity, PUBLISH)
    assert not decided.passed
    assert [c.name for c in decided.conditions if not c.held] == [failed]
    assert detail in decided.condition(failed).detail


def test_the_thresholds_come_from_params():
    loose = dataclasses.replace(
        PUBLISH, gate_min_excess_return=-0.5, gate_max_p_value=0.5, min_splits=1,
        min_features_used=1, min_trades=0,
    )  # fmt: skip
    thin = Complexity(trees=5, trees_that_split=1, splits=1, features_used=("a",))
    assert gate(metrics(excess=-0.2, p_value=0.3, trades=0), thin, loose).passed
    strict = dataclasses.replace(PUBLISH, gate_min_excess_return=0.2)
    assert gate(metrics(excess=0.1), GOOD, strict).condition("excess_return").held is False
