"""`klinecast evaluate`: the tuned candidate walked forward out of sample, with the statistics
that tell an edge from luck.

The scorecard (reports/metrics.json, `klinecast.research.scorecard`) holds, for the model and every baseline on the
same out-of-sample hours: returns before and after fees, fees paid, turnover, exposure, mean
holding time, accuracy with its Wilson interval and the probabilistic Sharpe ratio; for the
model also the deflated Sharpe ratio (from the number of trials the study ran), the bootstrap
p-value against each declared baseline, per-fold and per-month returns and a calibration table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import baselines, model, stats
from klinecast.research.backtest import (
    HOURS_PER_YEAR,
    BacktestResult,
    scored_rows,
    walk_forward_with_params,
)
from klinecast.research.pooled import walk_forward_pooled_with_params
from klinecast.research.scorecard import (
    BaselineTest,
    CalibrationBin,
    EvaluatedSpan,
    FoldReturns,
    MonthReturns,
    Scorecard,
    Significance,
    YearFigures,
)
from klinecast.research.tuning import BestParams


def out_of_sample(
    frame: pd.DataFrame,
    params: Params,
    candidate: model.Candidate,
    *,
    pool: dict[str, pd.DataFrame] | None = None,
) -> BacktestResult:
    """Walk-forward over the out-of-sample span with the candidate, retraining every step_days.

    Training windows reach back into the data before the span, never into it.

    Args:
        pool: symbol -> features of every pooled symbol (`frame`'s among them): the pooled
            model is retrained on all of them, and `frame`'s symbol (params') trades.

    Raises:
        KlinecastError: the span holds no feature rows; the message says what to change.
    """
    span = params.split.out_of_sample
    start, end = pd.Timestamp(span.start), pd.Timestamp(span.stop)
    rows = scored_rows(frame)
    inside = rows[span.holds(rows.index)]
    if inside.empty:
        first, last = (rows.index[0], rows.index[-1]) if len(rows) else (None, None)
        raise KlinecastError(
            f"the out-of-sample span {span} has no feature rows: the data covers "
            f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}. Set split.out_of_sample_start/end inside the "
            "data (and split.in_sample_* before it), or ingest newer data (make data)"
            if first is not None
            else "there are no labelled feature rows at all; run `make data` and `dvc repro`"
        )
    if pool is not None:
        if params.data.symbol not in pool:
            raise KlinecastError(
                f"{params.data.symbol} is not one of the pooled symbols ({', '.join(pool)})"
            )
        return pooled_out_of_sample(pool, params, candidate)[params.data.symbol]
    return walk_forward_with_params(
        frame[frame.index < end], params, candidate, test_start=start, test_end=end
    )


def pooled_out_of_sample(
    pool: dict[str, pd.DataFrame], params: Params, candidate: model.Candidate
) -> dict[str, BacktestResult]:
    """Every pooled symbol's walk-forward over the out-of-sample span: the pooled model
    retrained every step_days on all of them (each training window reaching back before the
    span, never into it), each symbol trading its own rows."""
    span = params.split.out_of_sample
    start, end = pd.Timestamp(span.start), pd.Timestamp(span.stop)
    frames = {s: features[features.index < end] for s, features in pool.items()}
    return walk_forward_pooled_with_params(
        frames, params, candidate, test_start=start, test_end=end
    )


@dataclass(frozen=True)
class Evaluation:
    """The out-of-sample walk-forward and its scorecard (reports/metrics.json)."""

    result: BacktestResult
    scorecard: Scorecard

    @property
    def predictions(self) -> pd.DataFrame:
        return self.result.predictions

    def daily_equity(self) -> pd.DataFrame:
        """Each strategy's equity at the end of every day (dvc plots' equity.csv)."""
        daily = equity_curves(self.predictions).resample("1D").last()
        daily.index = daily.index.strftime("%Y-%m-%d")
        return daily.rename_axis("day")


def evaluate(
    frame: pd.DataFrame,
    params: Params,
    tuned: BestParams,
    *,
    span_looks: int = 1,
    pool: dict[str, pd.DataFrame] | None = None,
) -> Evaluation:
    """The tuned candidate walked forward out of sample, scored against the baselines.

    Args:
        span_looks: how many times the span has been evaluated, this time included
            (`release.registry.record_look`).
        pool: the pooled model's symbols' features (`out_of_sample`).

    Raises:
        KlinecastError: the out-of-sample span holds no feature rows.
    """
    result = out_of_sample(frame, params, tuned.candidate, pool=pool)
    card = scorecard(
        result, params, tuned.candidate, search=tuned.search, in_sample=tuned.in_sample,
        span_looks=span_looks, holdout=tuned.holdout,
    )  # fmt: skip
    return Evaluation(result, card)


def equity_curves(predictions: pd.DataFrame) -> pd.DataFrame:
    """Equity after fees (starting at 1) of the model and every baseline, hour by hour."""
    columns = {"model": "strategy_return"} | {
        c[: -len("_return")]: c
        for c in predictions.columns
        if c.endswith("_return") and c not in ("strategy_return", "next_return")
    }
    return pd.DataFrame({name: np.cumprod(1 + predictions[c]) for name, c in columns.items()})


def scorecard(
    result: BacktestResult,
    params: Params,
    candidate: model.Candidate,
    *,
    search: dict | None = None,
    in_sample: dict | None = None,
    span_looks: int = 1,
    holdout: dict | None = None,
) -> Scorecard:
    """The model and every baseline on the same out-of-sample hours, with the statistics that
    tell an edge from luck.

    Args:
        search: tune's search record (trials_run, sharpe_variance, trials_that_trade and the
            chosen trial's in-sample deflated Sharpe).
        in_sample: the chosen trial's in-sample summary, for the report's side-by-side.
        holdout: the chosen trial on the inner hold-out (tune.holdout_days), likewise.
        span_looks: how many times this out-of-sample span has been evaluated (this time
            included).
    """
    p = result.predictions
    search = search or {"trials_run": 1, "sharpe_variance": 0.0, "trials_that_trade": None}
    trials, variance = int(search["trials_run"]), float(search["sharpe_variance"])
    returns = p["strategy_return"].to_numpy()
    side = candidate.rule.side
    reps = params.backtest.bootstrap_reps
    declared = {}
    for name in baselines.declared(side, params.backtest, primary=candidate.rule.primary):
        benchmark = p[f"{name}_return"].to_numpy()
        p_value = stats.bootstrap_p_value(returns, benchmark, reps=reps, seed=params.tune.seed)
        declared[name] = BaselineTest(
            excess_return=result.excess_returns[name],
            p_value=p_value,
            mc_error=stats.monte_carlo_error(p_value, reps=reps),
            # the Sharpe of the hourly differences: the baseline's own Sharpe is an estimate too
            psr=stats.probabilistic_sharpe(returns - benchmark),
        )
    worst = stats.largest_p_value({n: t.p_value for n, t in declared.items()})
    luck = stats.expected_max_sharpe(trials=trials, sharpe_variance=variance)
    return Scorecard(
        span=EvaluatedSpan(
            p.index[0].isoformat(), p.index[-1].isoformat(), len(p), result.folds,
            result.skipped_hours,
        ),  # fmt: skip
        fee_per_side=params.backtest.fee,
        slippage_per_side=params.backtest.slippage,
        candidate=candidate,
        model=result.model,
        baselines=dict(result.baselines),
        excess_return=result.excess_returns,
        significance=Significance(
            test="SPA (arch), stationary bootstrap, one-sided, the model against each declared "
            "baseline, hourly after costs; the gate takes the largest p-value",
            bootstrap_reps=reps,
            side=side,
            declared=declared,
            max_p_value=declared[worst].p_value,
            max_p_baseline=worst,
            probabilistic_sharpe=result.model.probabilistic_sharpe,
            deflated_sharpe=search.get("deflated_sharpe"),
            trials_run=trials,
            trials_that_trade=search.get("trials_that_trade"),
            luck_sharpe_annualised=luck * float(np.sqrt(HOURS_PER_YEAR)),
            span_looks=span_looks,
        ),
        per_fold=per_fold(p, baselines=list(result.baselines)),
        per_month=per_month(p, baselines=list(result.baselines)),
        per_year=per_year(p, baselines=list(result.baselines)),
        calibration=calibration(p),
        in_sample=in_sample or {},
        holdout=holdout or {},
    )


def per_year(predictions: pd.DataFrame, *, baselines: list[str]) -> tuple[YearFigures, ...]:
    """Calendar years (UTC): each strategy's return after costs, Sharpe and position changes."""
    years = predictions.index.tz_convert("UTC").year
    columns = {"model": ("strategy_return", "position")} | {
        name: (f"{name}_return", f"{name}_position") for name in baselines
    }
    found = []
    for year in sorted(set(years)):
        part = predictions[years == year]
        for name, (returns, position) in columns.items():
            r = part[returns].to_numpy(dtype=float)
            found.append(
                YearFigures(
                    year=int(year),
                    strategy=name,
                    return_after_costs=float(np.prod(1 + r) - 1),
                    sharpe=stats.sharpe(r) * float(np.sqrt(HOURS_PER_YEAR)),
                    changes=int(np.count_nonzero(np.diff(part[position].to_numpy(dtype=float)))),
                )
            )
    return tuple(found)


def per_fold(predictions: pd.DataFrame, *, baselines: list[str]) -> tuple[FoldReturns, ...]:
    """Each walk-forward fold: its hours, the model's returns before and after fees, and every
    baseline's after fees."""
    rows = []
    for number, fold in predictions.groupby("fold", sort=True):
        gross = fold["position"] * fold["next_return"]
        rows.append(
            FoldReturns(
                fold=int(number),
                first_hour=fold.index[0].isoformat(),
                last_hour=fold.index[-1].isoformat(),
                hours=len(fold),
                return_after_fees=float(np.prod(1 + fold["strategy_return"]) - 1),
                return_before_fees=float(np.prod(1 + gross) - 1),
                position_changes=int(np.count_nonzero(np.diff(fold["position"]))),
                exposure=float(np.mean(fold["position"] != 0)),
                baselines={
                    name: float(np.prod(1 + fold[f"{name}_return"]) - 1) for name in baselines
                },
            )
        )
    return tuple(rows)


def per_month(predictions: pd.DataFrame, *, baselines: list[str]) -> tuple[MonthReturns, ...]:
    """Calendar months (UTC): the model's return after fees and every baseline's."""
    months = predictions.index.tz_convert("UTC").strftime("%Y-%m")
    columns = {"model": "strategy_return"} | {name: f"{name}_return" for name in baselines}
    grouped = (1 + predictions[list(columns.values())]).groupby(months).prod() - 1
    return tuple(
        MonthReturns(month, {name: float(row[column]) for name, column in columns.items()})
        for month, row in grouped.iterrows()
    )


def _classified(predictions: pd.DataFrame) -> pd.Series:
    """The hours the classifier is scored on: labelled, and for a meta-labelled model those
    its primary proposed a bet (elsewhere prob_up is the rule's 0.5, not the classifier's)."""
    return predictions["label"].notna() & predictions.get("proposed", True)


def calibration(predictions: pd.DataFrame, *, bins: int = 10) -> tuple[CalibrationBin, ...]:
    """prob_up in deciles: the mean predicted probability against how often it went up."""
    known = predictions[_classified(predictions)]
    if len(known) < bins:
        return ()
    edges = np.unique(np.quantile(known["prob_up"], np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, known["prob_up"], side="right") - 1, 0, len(edges) - 2)
    table = []
    for b in range(len(edges) - 1):
        part = known[which == b]
        if len(part):
            table.append(
                CalibrationBin(
                    float(part["prob_up"].mean()), float(part["label"].mean()), len(part)
                )
            )
    return tuple(table)


def classification_summary(predictions: pd.DataFrame, *, roc_points: int = 101) -> dict:
    """Confusion matrix (rows: actual down/up) and a ROC curve thinned to ~roc_points points."""
    from sklearn.metrics import confusion_matrix, roc_curve

    known = predictions[_classified(predictions)]
    actual = known["label"].to_numpy() > 0.5
    predicted = known["prob_up"].to_numpy() > 0.5
    matrix = confusion_matrix(actual, predicted, labels=[False, True])
    fpr, tpr, thresholds = roc_curve(actual, known["prob_up"].to_numpy())
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(roc_points, len(fpr))).round().astype(int))
    return {
        "categories": ["down", "up"],
        "confusion_matrix": matrix.tolist(),
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        # roc_curve's first threshold is +inf, which JSON cannot hold
        "thresholds": np.minimum(thresholds[keep], 1.0).tolist(),
    }
