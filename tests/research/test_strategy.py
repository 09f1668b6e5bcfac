"""The trading rule: sides, hysteresis, minimum hold, and one function for every caller.

The rule's sides, bands, hysteresis, minimum hold and decision cadence, and that one decision at
a time from a ledger's book equals the backtest's single pass.
"""

import numpy as np
import pytest

from klinecast.research import strategy
from klinecast.research.strategy import FLAT, SEED_RULE, Holding, StrategyRule


def run(proba, rule):
    return strategy.positions(np.array(proba), rule)[0].tolist()


def test_the_seed_rule_flips_every_hour_and_is_flat_only_at_one_half():
    assert run([0.9, 0.51, 0.5, 0.49, 0.1, 0.6], SEED_RULE) == [1, 1, 0, -1, -1, 1]


def test_long_only_is_flat_where_long_short_is_short():
    proba = [0.6, 0.4, 0.3, 0.7]
    assert run(proba, StrategyRule("long_short")) == [1, -1, -1, 1]
    assert run(proba, StrategyRule("long_only")) == [1, 0, 0, 1]


def test_an_entry_band_keeps_it_out_of_the_noise():
    rule = StrategyRule("long_short", entry_band=0.05, exit_band=0.05)
    assert run([0.54, 0.56, 0.54, 0.44, 0.46, 0.5], rule) == [0, 1, 0, -1, 0, 0]


def test_hysteresis_holds_between_the_exit_and_the_entry_band():
    rule = StrategyRule("long_short", entry_band=0.05, exit_band=0.01)
    # enters at 0.56, holds at 0.54 and 0.52 (above 0.51), leaves at 0.505
    assert run([0.54, 0.56, 0.54, 0.52, 0.505, 0.52], rule) == [0, 1, 1, 1, 0, 0]
    # a long flips straight to short when the short entry is crossed
    assert run([0.6, 0.4], rule) == [1, -1]


def test_minimum_hold_keeps_a_position_for_that_many_hours():
    rule = StrategyRule("long_short", min_hold_hours=3)
    assert run([0.6, 0.4, 0.4, 0.4, 0.6, 0.6], rule) == [1, 1, 1, -1, -1, -1]
    assert run([0.6, 0.4], StrategyRule("long_short", min_hold_hours=1)) == [1, -1]


def test_one_step_equals_the_backtest_pass_with_the_holding_carried():
    """The trader decides one hour at a time from its ledger; the backtest in one pass."""
    rng = np.random.default_rng(0)
    proba = np.clip(0.5 + rng.normal(0, 0.06, 500), 0, 1)
    rule = StrategyRule("long_short", entry_band=0.04, exit_band=0.01, min_hold_hours=4)
    batch, _ = strategy.positions(proba, rule)
    history = []
    for prob in proba:
        holding = strategy.holding_from_positions(history)  # what a ledger tells
        history.append(strategy.next_position(prob, rule, holding))
    assert history == batch.tolist()
    # and over two spans with the book carried across, as the walk-forward's folds do
    first, held = strategy.positions(proba[:200], rule)
    second, _ = strategy.positions(proba[200:], rule, held)
    assert [*first, *second] == batch.tolist()


def test_holding_from_a_ledgers_positions():
    assert strategy.holding_from_positions([]) == FLAT
    assert strategy.holding_from_positions([1, 1, 0]) == FLAT
    assert strategy.holding_from_positions([1, -1, -1, -1]) == Holding(-1, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"side": "short_only"}, "side: expected one of"),
        ({"entry_band": 0.01, "exit_band": 0.02}, "exit_band <= entry_band"),
        ({"entry_band": 0.6}, "entry_band < 0.5"),
        ({"min_hold_hours": 0}, "min_hold_hours: expected at least 1"),
    ],
)
def test_a_bad_rule_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StrategyRule(**kwargs)


def test_a_cadence_changes_the_position_only_at_its_decision_hours():
    rule = StrategyRule("long_short", cadence_hours=4)
    proba = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    hours = np.array([22, 23, 0, 1, 2, 3, 4, 5, 6])  # UTC hours at which each row decides
    position, _ = strategy.positions(proba, rule, decision_hours=hours)
    # flat until 00:00, short from 00:00 (decided then), long from 04:00
    assert position.tolist() == [0, 0, -1, -1, -1, -1, 1, 1, 1]
    daily = StrategyRule("long_only", cadence_hours=24)
    once, _ = strategy.positions(proba, daily, decision_hours=hours)
    assert once.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0]  # at 00:00 the model said down


def test_a_cadence_needs_the_decision_hour_and_divides_a_day():
    with pytest.raises(ValueError, match="needs the decision's hour"):
        strategy.next_position(0.9, StrategyRule(cadence_hours=24))
    with pytest.raises(ValueError, match="cadence_hours: expected a divisor of 24"):
        StrategyRule(cadence_hours=5)
    assert strategy.next_position(0.9, StrategyRule(cadence_hours=24), decision_hour=0) == 1
    assert strategy.next_position(0.9, StrategyRule(cadence_hours=24), decision_hour=5) == 0


def test_a_cadence_counts_the_hours_held_between_decisions():
    """The minimum hold counts hours, decision or not: held 4 hours at the next decision."""
    rule = StrategyRule("long_short", min_hold_hours=5, cadence_hours=4)
    proba = np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    hours = np.arange(9) % 24
    position, held = strategy.positions(proba, rule, decision_hours=hours)
    # long at 00:00; at 04:00 held 4 hours < 5: still long; at 08:00 it may flip
    assert position.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, -1]
    assert held == Holding(-1, 1)
