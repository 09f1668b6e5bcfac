"""The gate: whether a trained model may become `production`, from its out-of-sample metrics
and what its trees hold."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from klinecast.config import PublishParams
from klinecast.errors import KlinecastError
from klinecast.research import model
from klinecast.research.scorecard import Scorecard


@dataclass(frozen=True)
class Condition:
    """One of the gate's conditions, whether it held, and the numbers behind it."""

    name: str
    held: bool
    detail: str


@dataclass(frozen=True)
class Gate:
    """Whether the model may become `production`: every condition must hold."""

    conditions: tuple[Condition, ...]

    @property
    def passed(self) -> bool:
        return all(c.held for c in self.conditions)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    def reasons(self) -> list[str]:
        return [f"{'held' if c.held else 'FAILED'}: {c.detail}" for c in self.conditions]

    def as_dict(self) -> dict:
        return {"passed": self.passed, "conditions": [asdict(c) for c in self.conditions]}


def gate(metrics: Scorecard | None, complexity: model.Complexity, params: PublishParams) -> Gate:
    """The publish gate over evaluate's scorecard and the final model's trees.

    Raises:
        KlinecastError: there is no scorecard (a model made without evaluate), or it lacks
            the gate's baseline.
    """
    if metrics is None:
        raise KlinecastError("the model carries no evaluation (metrics.json); run evaluate first")
    if params.gate_baseline not in metrics.excess_return:
        raise KlinecastError(
            f"the metrics lack the excess return over {params.gate_baseline}; rerun evaluate"
        )
    excess = metrics.excess_return[params.gate_baseline]
    significance = metrics.significance
    p_value = significance.p_value
    trades = metrics.model.trades
    excess_held = excess >= params.gate_min_excess_return
    p_held = p_value <= params.gate_max_p_value
    thin = []
    if complexity.splits < params.min_splits:
        thin.append(f"{complexity.splits} splits < {params.min_splits}")
    if len(complexity.features_used) < params.min_features_used:
        used = ", ".join(complexity.features_used) or "none"
        thin.append(
            f"{len(complexity.features_used)} feature(s) used ({used}) < {params.min_features_used}"
        )
    if trades < params.min_trades:
        searched = significance.trials_that_trade
        thin.append(
            f"the rule traded {trades} time(s) out of sample < {params.min_trades}"
            + ("; no tuning trial traded in sample either" if searched == 0 else "")
        )
    shape = (
        f"{complexity.splits} splits in {complexity.trees_that_split} of {complexity.trees} "
        f"trees over {len(complexity.features_used)} feature(s), {trades} trades"
    )
    return Gate(
        (
            Condition(
                "excess_return",
                excess_held,
                f"excess return over {params.gate_baseline} {excess:+.2%} "
                f"{'>=' if excess_held else '<'} {params.gate_min_excess_return:+.2%}",
            ),
            Condition(
                "p_value",
                p_held,
                f"p-value against the best baseline ({significance.best_baseline}) "
                f"{p_value:.3f} {'<=' if p_held else '>'} {params.gate_max_p_value}",
            ),
            Condition(
                "not_degenerate",
                not thin,
                f"not degenerate: {shape}" if not thin else f"degenerate: {'; '.join(thin)}",
            ),
        )
    )
