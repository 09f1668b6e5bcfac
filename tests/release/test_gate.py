"""The publish gate: each of its three conditions alone refuses a model, and says why; every
declared baseline must be beaten (an intersection-union test on the largest p-value).

Each of the gate's conditions alone refuses a model (the excess over any one declared baseline,
the largest p-value, NaN included, too few splits, too few features, no trade) and says which;
four p-values of 0.04 pass (no correction), and every baseline is listed with its verdict.
"""

import dataclasses
import math

import numpy as np
import pytest

from klinecast.config import PublishParams
from klinecast.errors import KlinecastError
from klinecast.release.gate import book_gates, gate
from klinecast.research import stats
from klinecast.research.model import Complexity
from tests.support.model_fixtures import scorecard as metrics

PUBLISH = PublishParams()  # excess >= 0, largest p <= 0.05, 50 splits, 3 features, 1 trade
GOOD = Complexity(trees=400, trees_that_split=120, splits=300, features_used=("a", "b", "c"))


def test_a_model_that_meets_every_condition_passes():
    decided = gate(metrics(), GOOD, PUBLISH)
    assert decided.passed
    assert [c.name for c in decided.conditions] == ["excess_return", "p_value", "not_degenerate"]
    assert all(c.held for c in decided.conditions)


@pytest.mark.parametrize(
    ("metric_changes", "complexity", "failed", "detail"),
    [
        ({"excess": -0.001}, GOOD, "excess_return", "vol_target (-0.10%) (<= +0.00%)"),
        ({"against": {"trend_200d": (0.0, 0.01)}}, GOOD, "excess_return", "trend_200d (+0.00%)"),
        ({"against": {"trend_200d": (-0.02, 0.01)}}, GOOD, "excess_return", "trend_200d (-2.00%)"),
        ({"p_value": 0.051}, GOOD, "p_value", "(vol_target) 0.051 ± 0.002 > 0.05"),
        ({"against": {"trend_50d": (0.1, 0.2)}}, GOOD, "p_value", "(trend_50d) 0.200 ± 0.002"),
        ({"p_value": math.nan}, GOOD, "p_value", "nan ± 0.002 > 0.05"),
        ({"against": {"buy_and_hold": (0.1, math.nan)}}, GOOD, "p_value", "(buy_and_hold) nan"),
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


def test_a_linear_model_has_no_splits_and_is_judged_on_the_features_it_weighs():
    linear = Complexity(trees=0, trees_that_split=0, splits=0, features_used=("a", "b", "c"),
                        booster="gblinear")  # fmt: skip
    decided = gate(metrics(), linear, PUBLISH)
    assert decided.passed
    assert "a linear model with a weight on 3 feature(s)" in decided.condition("not_degenerate").detail
    assert gate(metrics(), dataclasses.replace(linear, features_used=("a",)), PUBLISH).passed
    constant = gate(metrics(), dataclasses.replace(linear, features_used=()), PUBLISH)
    assert not constant.passed
    assert constant.condition("not_degenerate").detail == "degenerate: 0 feature(s) weighed (none) < 1"
    two = gate(metrics(), linear, dataclasses.replace(PUBLISH, min_weights=4))
    assert two.condition("not_degenerate").detail == "degenerate: 3 feature(s) weighed (a, b, c) < 4"
    trees = gate(metrics(), dataclasses.replace(linear, booster="gbtree"), PUBLISH)
    assert "0 splits < 50" in trees.condition("not_degenerate").detail


def test_the_thresholds_come_from_params():
    loose = dataclasses.replace(
        PUBLISH, gate_min_excess_return=-0.5, gate_max_p_value=0.5, min_splits=1,
        min_features_used=1, min_trades=0,
    )  # fmt: skip
    thin = Complexity(trees=5, trees_that_split=1, splits=1, features_used=("a",))
    assert gate(metrics(excess=-0.2, p_value=0.3, trades=0), thin, loose).passed
    strict = dataclasses.replace(PUBLISH, gate_min_excess_return=0.2)
    assert gate(metrics(excess=0.1), GOOD, strict).condition("excess_return").held is False


def test_the_largest_p_value_decides_and_no_correction_is_applied():
    """Four baselines each at p 0.04: a Bonferroni correction would refuse (0.04 > 0.05 / 4);
    the intersection-union test passes, because the model must beat every one of them."""
    decided = gate(metrics(p_value=0.04), GOOD, PUBLISH)
    assert decided.passed and len(decided.baselines) == 4
    assert "largest p-value of 4 declared baselines" in decided.condition("p_value").detail
    mixed = gate(
        metrics(against={"buy_and_hold": (0.3, 0.0), "vol_target": (0.01, 0.049)}), GOOD, PUBLISH
    )
    assert mixed.passed and "(vol_target) 0.049" in mixed.condition("p_value").detail


def test_every_baseline_is_listed_with_its_verdict():
    decided = gate(metrics(against={"trend_200d": (-0.01, 0.6)}), GOOD, PUBLISH)
    listed = {b["baseline"]: b for b in decided.as_dict()["baselines"]}
    assert set(listed) == {"buy_and_hold", "trend_50d", "trend_200d", "vol_target"}
    assert listed["trend_200d"]["excess_held"] is False and listed["trend_200d"]["p_held"] is False
    assert listed["buy_and_hold"]["excess_held"] and listed["buy_and_hold"]["p_held"]
    assert listed["trend_200d"]["mc_error"] == 0.002


def test_a_scorecard_without_declared_baselines_is_refused_with_a_reason():
    card = metrics()
    bare = dataclasses.replace(
        card, significance=dataclasses.replace(card.significance, declared={})
    )
    with pytest.raises(KlinecastError, match="declare no baseline"):
        gate(bare, GOOD, PUBLISH)


def test_the_receipt_reports_how_often_the_span_was_looked_at():
    card = metrics()
    looked = dataclasses.replace(
        card, significance=dataclasses.replace(card.significance, span_looks=7)
    )
    assert gate(looked, GOOD, PUBLISH).as_dict()["span_looks"] == 7


def test_a_book_of_one_is_holm_over_one_p_value():
    alone = gate(metrics(p_value=0.04), GOOD, PUBLISH)
    (booked,) = book_gates({"BTCUSDT": alone}, PUBLISH).values()
    assert booked.passed and booked.condition("book_multiplicity").held
    refused = gate(metrics(p_value=0.06), GOOD, PUBLISH)
    assert not book_gates({"BTCUSDT": refused}, PUBLISH)["BTCUSDT"].condition(
        "book_multiplicity"
    ).held


def test_a_book_holds_its_symbols_to_holm_step_down_levels():
    """Five symbols at p 0.004, 0.011, 0.04, 0.3, 0.5: Holm holds the smallest to 0.05/5 = 0.01,
    the next to 0.05/4 = 0.0125, the third to 0.05/3 and stops there. Alone, three would pass."""
    p_values = {"A": 0.004, "B": 0.011, "C": 0.04, "D": 0.3, "E": 0.5}
    own = {s: gate(metrics(p_value=p), GOOD, PUBLISH) for s, p in p_values.items()}
    assert [s for s, g in own.items() if g.passed] == ["A", "B", "C"]
    booked = book_gates(own, PUBLISH)
    assert [s for s, g in booked.items() if g.passed] == ["A", "B"]
    assert "held to 0.05 / 3 = 0.0167" in booked["C"].condition("book_multiplicity").detail
    assert [c.name for c in booked["A"].conditions][-1] == "book_multiplicity"


def test_a_book_of_five_null_symbols_passes_one_by_luck_at_most_alpha_of_the_time():
    """Five independent null symbols, each p uniform: gated alone, at least one passes in
    1 - 0.95^5 = 23 % of books; under Holm at most 5 %."""
    rng = np.random.default_rng(0)
    alone = holm_passed = 0
    books = 4000
    for _ in range(books):
        p_values = dict(zip("ABCDE", rng.uniform(size=5), strict=True))
        alone += any(p <= 0.05 for p in p_values.values())
        holm_passed += any(stats.holm(p_values, alpha=0.05).values())
    assert 0.2 < alone / books < 0.26
    assert holm_passed / books <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / books)
