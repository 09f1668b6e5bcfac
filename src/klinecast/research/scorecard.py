"""The scorecard: what evaluate measured out of sample, typed (reports/metrics.json).

The model and every baseline on the same out-of-sample hours, the statistics that tell an edge
from luck, and the same returns per fold and per month. Evaluation writes it; the gate, the
report, publish and the pipeline UI read it back through `Scorecard.from_dict`, so a missing or
malformed key fails once, here, with its name. Its JSON keys are metrics.json's contract.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from klinecast.errors import KlinecastError
from klinecast.research.model import Candidate


class ScorecardError(KlinecastError):
    """metrics.json lacks a key, or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Metrics:
    """How a strategy did over a set of hours, before and after fees."""

    cumulative_return: float  # after fees
    return_before_fees: float
    annualized_return: float  # after fees
    sharpe: float  # after fees, hourly, annualised
    probabilistic_sharpe: float  # P(true Sharpe > 0) from the hourly returns after fees
    max_drawdown: float
    fees_paid: float  # fee x turnover, as a share of capital
    turnover: float  # sum of |position changes|, the final close included
    trades: int  # position changes, the final close included
    exposure: float  # share of hours in the market
    mean_holding_hours: float | None
    accuracy: float | None  # share of hours in the market whose next candle went our way
    accuracy_low: float | None  # its Wilson 95 % interval
    accuracy_high: float | None
    hours_in_market: int
    hours: int
    slippage_paid: float = 0.0  # slippage x turnover, as a share of capital
    roc_auc: float | None = None  # the classifier, against its own (horizon) labels
    log_loss: float | None = None
    classifier_accuracy: float | None = None
    classifier_accuracy_low: float | None = None
    classifier_accuracy_high: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvaluatedSpan:
    """The out-of-sample hours the model and the baselines were scored on."""

    first_hour: str
    last_hour: str
    hours: int
    folds: int
    #: hours no fold traded (a fold skipped for want of training rows), held flat
    skipped_hours: int = 0


@dataclass(frozen=True)
class BaselineTest:
    """The model against one baseline it was declared to beat, out of sample, after costs."""

    excess_return: float  # the model's cumulative return minus the baseline's
    #: one-sided: P(a model no better than the baseline beats it by this much), from the
    #: stationary bootstrap of the hourly differences (arch's SPA test)
    p_value: float
    mc_error: float  # the p-value's Monte-Carlo standard error, sqrt(p(1-p)/resamples)
    #: the probabilistic Sharpe ratio of the hourly differences with the baseline: P(the true
    #: Sharpe of the model's excess over it > 0)
    psr: float


@dataclass(frozen=True)
class Significance:
    """Whether the model's edge is more than luck.

    The gate holds the model to every baseline its side could hold itself, declared before
    the evaluation (`declared`); it passes only when the largest of their p-values is small
    (an intersection-union test: each must be beaten, so no correction for several tests is
    needed). The deflated Sharpe ratio is the chosen trial's in sample, against the best of
    every trial run on the same in-sample span; out of sample the probabilistic Sharpe ratio
    stands against 0, and on the hourly differences with each baseline.
    """

    test: str
    bootstrap_reps: int
    side: str
    declared: dict[str, BaselineTest]
    max_p_value: float
    max_p_baseline: str
    probabilistic_sharpe: float  # P(true out-of-sample Sharpe > 0)
    #: in sample: P(the chosen trial's Sharpe > the best of trials_run unskilled trials); None
    #: when tuning recorded none (a study written by an older klinecast)
    deflated_sharpe: float | None
    trials_run: int
    trials_that_trade: int | None
    luck_sharpe_annualised: float
    #: how many times this out-of-sample span has been evaluated with the study's storage
    span_looks: int = 1


@dataclass(frozen=True)
class FoldReturns:
    """One walk-forward fold: the model before and after fees, every baseline after."""

    fold: int
    first_hour: str
    last_hour: str
    hours: int
    return_after_fees: float
    return_before_fees: float
    position_changes: int
    exposure: float
    baselines: dict[str, float]


@dataclass(frozen=True)
class MonthReturns:
    """One calendar month (UTC): each strategy's return after fees, the model's as `model`."""

    month: str
    returns: dict[str, float]

    def as_dict(self) -> dict:
        return {"month": self.month, **self.returns}

    @classmethod
    def from_dict(cls, values: Mapping) -> MonthReturns:
        return cls(str(values["month"]), {k: float(v) for k, v in values.items() if k != "month"})


@dataclass(frozen=True)
class YearFigures:
    """One calendar year (UTC) of one strategy, after costs."""

    year: int
    strategy: str
    return_after_costs: float
    sharpe: float
    changes: int  # position changes


@dataclass(frozen=True)
class CalibrationBin:
    """A decile of prob_up: the mean predicted probability against how often it went up."""

    predicted: float
    observed: float
    count: int


@dataclass(frozen=True)
class Scorecard:
    span: EvaluatedSpan
    fee_per_side: float
    candidate: Candidate
    model: Metrics
    baselines: dict[str, Metrics]
    #: the model's return after fees minus each baseline's
    excess_return: dict[str, float]
    significance: Significance
    per_fold: tuple[FoldReturns, ...] = ()
    per_month: tuple[MonthReturns, ...] = ()
    per_year: tuple[YearFigures, ...] = ()
    calibration: tuple[CalibrationBin, ...] = ()
    slippage_per_side: float = 0.0
    #: the chosen trial's in-sample summary (tune's best_params.json), for the side-by-side
    in_sample: dict = field(default_factory=dict)
    #: the chosen trial on the inner hold-out (best_params.json's holdout; empty: none)
    holdout: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "span": dataclasses.asdict(self.span),
            "fee_per_side": self.fee_per_side,
            "candidate": self.candidate.as_dict(),
            "hyperparams": self.candidate.hp.as_dict(),
            "model": self.model.as_dict(),
            "baselines": {name: m.as_dict() for name, m in self.baselines.items()},
            "excess_return": dict(self.excess_return),
            "significance": dataclasses.asdict(self.significance),
            "per_fold": [dataclasses.asdict(f) for f in self.per_fold],
            "per_month": [m.as_dict() for m in self.per_month],
            "per_year": [dataclasses.asdict(y) for y in self.per_year],
            "calibration": [dataclasses.asdict(b) for b in self.calibration],
            "slippage_per_side": self.slippage_per_side,
            "in_sample": dict(self.in_sample),
            "holdout": dict(self.holdout),
        }

    @classmethod
    def from_dict(cls, values: Mapping, *, source: str = "metrics.json") -> Scorecard:
        """Raises ScorecardError naming the first key that is missing or malformed."""
        try:
            return cls(
                span=_record(EvaluatedSpan, values["span"]),
                fee_per_side=float(values["fee_per_side"]),
                candidate=Candidate.from_dict(values["candidate"]),
                model=_record(Metrics, values["model"]),
                baselines={k: _record(Metrics, v) for k, v in values["baselines"].items()},
                excess_return={k: float(v) for k, v in values["excess_return"].items()},
                significance=_significance(values["significance"]),
                per_fold=tuple(_record(FoldReturns, f) for f in values.get("per_fold", ())),
                per_month=tuple(MonthReturns.from_dict(m) for m in values.get("per_month", ())),
                per_year=tuple(_record(YearFigures, y) for y in values.get("per_year", ())),
                slippage_per_side=float(values.get("slippage_per_side", 0.0)),
                calibration=tuple(
                    _record(CalibrationBin, b) for b in values.get("calibration", ())
                ),
                in_sample=dict(values.get("in_sample") or {}),
                holdout=dict(values.get("holdout") or {}),
            )
        except KeyError as exc:
            raise ScorecardError(
                f"{source} lacks {exc} (written by an older klinecast: rerun evaluate)"
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ScorecardError(f"{source} is malformed: {exc}") from None

    @classmethod
    def read(cls, path) -> Scorecard:
        """metrics.json from a file; raises ScorecardError for a missing or unreadable one."""
        import json
        from pathlib import Path

        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ScorecardError(f"{path} does not exist; run `klinecast evaluate` first") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ScorecardError(f"{path} is not readable JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ScorecardError(f"{path} is not a JSON object")
        return cls.from_dict(values, source=str(path))

    def headline(self) -> dict[str, float]:
        """The scalars a pipeline UI shows: the model's, the significance and every baseline's."""
        m, s = self.model, self.significance
        values = {
            "cumulative_return": m.cumulative_return,
            "return_before_costs": m.return_before_fees,
            "sharpe": m.sharpe,
            "max_drawdown": m.max_drawdown,
            "accuracy": m.accuracy,
            "classifier_accuracy": m.classifier_accuracy,
            "roc_auc": m.roc_auc,
            "trades": m.trades,
            "max_p_value": s.max_p_value,
            "deflated_sharpe": s.deflated_sharpe,
            "probabilistic_sharpe": s.probabilistic_sharpe,
        }
        values |= {f"{n}_return": b.cumulative_return for n, b in self.baselines.items()}
        return {k: float("nan") if v is None else float(v) for k, v in values.items()}


def _significance(values: Mapping) -> Significance:
    declared = {name: _record(BaselineTest, t) for name, t in values["declared"].items()}
    return _record(Significance, {**values, "declared": declared})


def _record(cls: type, values: Mapping):
    """cls from a mapping of its fields (extra keys ignored), each converted to its type."""
    hints = typing.get_type_hints(cls)
    return cls(
        **{f.name: _convert(hints[f.name], values[f.name]) for f in dataclasses.fields(cls)
           if f.name in values or f.default is dataclasses.MISSING}
    )  # fmt: skip


def _convert(hint, value):
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ValueError(f"a value of {hint} is null")
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if typing.get_origin(hint) in (typing.Union, type(int | None)) else hint
    if kind is bool or typing.get_origin(kind) is dict:
        return kind(value) if kind is bool else dict(value)
    if kind in (int, float, str):
        return kind(value)
    return value
