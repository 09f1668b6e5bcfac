"""The gate: whether a trained model may become `production`, from its out-of-sample scorecard
and what its trees hold.

The model must beat every baseline its side could hold, declared before the evaluation
(`research.baselines.declared`: buy-and-hold, the trend rules and the volatility-targeted one
for a long-only rule; the short one too for a long-short rule; a meta-labelled model's
primary rule itself, `primary_<feature>`, too):

- by more than publish.gate_min_excess_return after costs, each;
- significantly, each: the largest of their one-sided bootstrap p-values is at most
  publish.gate_max_p_value. This is an intersection-union test (the model must beat all of
  them), so no correction for the number of baselines is needed, and none is applied;
- and the model is not degenerate (enough splits over enough features, and a rule that
  trades). A linear model has no splits: it must carry a weight on enough features
  (publish.min_weights).

A book of several symbols is several gates: with five symbols and no edge anywhere, one gate
in five at p <= 0.05 passes by luck far more often than 5 %. `book_gates` adds one condition
to each symbol's gate, Holm's step-down test over the symbols' largest p-values at
publish.gate_max_p_value, which holds the book's family-wise error to that level. A book of
one is Holm over one p-value: the condition is the p-value condition again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from klinecast.config import PublishParams
from klinecast.errors import KlinecastError
from klinecast.research import model, stats
from klinecast.research.scorecard import BaselineTest, Scorecard


@dataclass(frozen=True)
class Condition:
    """One of the gate's conditions, whether it held, and the numbers behind it."""

    name: str
    held: bool
    detail: str


@dataclass(frozen=True)
class BaselineVerdict:
    """The gate's look at one declared baseline (publish.json and the report list them)."""

    baseline: str
    excess_return: float
    p_value: float
    mc_error: float
    excess_held: bool
    p_held: bool


@dataclass(frozen=True)
class Gate:
    """Whether the model may become `production`: every condition must hold."""

    conditions: tuple[Condition, ...]
    baselines: tuple[BaselineVerdict, ...] = ()
    #: how many times the out-of-sample span has been evaluated (the scorecard's look count)
    span_looks: int = 1

    @property
    def passed(self) -> bool:
        return all(c.held for c in self.conditions)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    def reasons(self) -> list[str]:
        return [f"{'held' if c.held else 'FAILED'}: {c.detail}" for c in self.conditions]

    @property
    def largest_p_value(self) -> float:
        """The largest of the declared baselines' p-values (NaN if any is NaN)."""
        values = [b.p_value for b in self.baselines]
        if not values or any(math.isnan(v) for v in values):
            return math.nan
        return max(values)

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "conditions": [asdict(c) for c in self.conditions],
            "baselines": [asdict(b) for b in self.baselines],
            "span_looks": self.span_looks,
        }


def gate(metrics: Scorecard | None, complexity: model.Complexity, params: PublishParams) -> Gate:
    """The publish gate over evaluate's scorecard and the final model's trees.

    Raises:
        KlinecastError: there is no scorecard (a model made without evaluate), or it declares
            no baseline.
    """
    if metrics is None:
        raise KlinecastError("the model carries no evaluation (metrics.json); run evaluate first")
    significance = metrics.significance
    if not significance.declared:
        raise KlinecastError("the metrics declare no baseline to beat; rerun evaluate")
    beat, significant, verdicts = significance_conditions(significance.declared, params)
    trades = metrics.model.trades
    thin = []
    linear = complexity.booster == model.LINEAR
    if not linear and complexity.splits < params.min_splits:
        thin.append(f"{complexity.splits} splits < {params.min_splits}")
    least = params.min_weights if linear else params.min_features_used
    if len(complexity.features_used) < least:
        used = ", ".join(complexity.features_used) or "none"
        thin.append(
            f"{len(complexity.features_used)} feature(s) "
            f"{'weighed' if linear else 'used'} ({used}) < {least}"
        )
    if trades < params.min_trades:
        searched = significance.trials_that_trade
        thin.append(
            f"the rule traded {trades} time(s) out of sample < {params.min_trades}"
            + ("; no tuning trial traded in sample either" if searched == 0 else "")
        )
    shape = (
        f"a linear model with a weight on {len(complexity.features_used)} feature(s), "
        f"{trades} trades"
        if linear
        else f"{complexity.splits} splits in {complexity.trees_that_split} of "
        f"{complexity.trees} trees over {len(complexity.features_used)} feature(s), "
        f"{trades} trades"
    )
    return Gate(
        (
            beat,
            significant,
            Condition(
                "not_degenerate",
                not thin,
                f"not degenerate: {shape}" if not thin else f"degenerate: {'; '.join(thin)}",
            ),
        ),
        verdicts,
        span_looks=significance.span_looks,
    )


def book_gates(gates: Mapping[str, Gate], params: PublishParams) -> dict[str, Gate]:
    """Each symbol's gate with the book's multiplicity condition added: Holm's step-down test
    over the symbols' largest p-values at publish.gate_max_p_value (`stats.holm`). A symbol
    passes only if its own gate does and Holm rejects its null among the book's.

    Args:
        gates: symbol -> its own gate (`gate`), every symbol of the book.
    """
    largest = {symbol: g.largest_p_value for symbol, g in gates.items()}
    rejected = stats.holm(largest, alpha=params.gate_max_p_value)
    ranked = sorted(largest, key=lambda s: (math.inf if math.isnan(largest[s]) else largest[s], s))
    found = {}
    for symbol, own in gates.items():
        rank = ranked.index(symbol)
        level = params.gate_max_p_value / (len(ranked) - rank)
        held = rejected[symbol]
        detail = (
            f"book of {len(gates)}: Holm's step-down over the symbols' largest p-values; "
            f"{symbol}'s {largest[symbol]:.3f} is #{rank + 1}, held to "
            f"{params.gate_max_p_value} / {len(ranked) - rank} = {level:.4f}"
            + ("" if held else " (or a smaller one failed first)")
        )
        found[symbol] = dataclasses.replace(
            own, conditions=(*own.conditions, Condition("book_multiplicity", held, detail))
        )
    return found


def significance_conditions(
    declared: dict[str, BaselineTest], params: PublishParams
) -> tuple[Condition, Condition, tuple[BaselineVerdict, ...]]:
    """The gate's excess-return and p-value conditions over the declared baselines' tests
    (one symbol's, or the book's), and a verdict per baseline."""
    verdicts = tuple(
        BaselineVerdict(
            baseline=name,
            excess_return=test.excess_return,
            p_value=test.p_value,
            mc_error=test.mc_error,
            # strictly: a model that only matches a baseline (both flat, say) has not beaten it
            excess_held=test.excess_return > params.gate_min_excess_return,
            p_held=test.p_value <= params.gate_max_p_value,
        )
        for name, test in declared.items()
    )
    short_of = [v for v in verdicts if not v.excess_held]
    largest = stats.largest_p_value({v.baseline: v.p_value for v in verdicts})
    worst = next(v for v in verdicts if v.baseline == largest)
    p_held = worst.p_value <= params.gate_max_p_value  # NaN fails
    beaten = ", ".join(f"{v.baseline} {v.excess_return:+.2%}" for v in verdicts)
    excess = Condition(
        "excess_return",
        not short_of,
        f"excess return over every declared baseline > "
        f"{params.gate_min_excess_return:+.2%}: {beaten}"
        if not short_of
        else "excess return short of "
        + ", ".join(f"{v.baseline} ({v.excess_return:+.2%})" for v in short_of)
        + f" (<= {params.gate_min_excess_return:+.2%})",
    )
    p_value = Condition(
        "p_value",
        p_held,
        f"largest p-value of {len(verdicts)} declared baselines ({worst.baseline}) "
        f"{worst.p_value:.3f} ± {worst.mc_error:.3f} "
        f"{'<=' if p_held else '>'} {params.gate_max_p_value}",
    )
    return excess, p_value, verdicts
