"""`klinecast evaluate` and `klinecast train`: out-of-sample walk-forward, honest statistics,
the final model, and the gate that decides whether it may trade.

The metrics document (reports/metrics.json) holds, for the model and every baseline on the
same out-of-sample hours: returns before and after fees, fees paid, turnover, exposure, mean
holding time, accuracy with its Wilson interval and the probabilistic Sharpe ratio; for the
model also the deflated Sharpe ratio (from the number of trials the study ran), the bootstrap
p-value against the best baseline, per-fold and per-month returns and a calibration table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from klinecast import model, stats
from klinecast.backtest import BacktestResult, scored_rows, walk_forward_with_params
from klinecast.config import Params, PublishParams
from klinecast.errors import KlinecastError
from klinecast.features import horizon_labels
from klinecast.metadata import ArtifactMetadata, artifact_metadata
from klinecast.tuning import BestParams


def out_of_sample(
    frame: pd.DataFrame, params: Params, candidate: model.Candidate
) -> BacktestResult:
    """Walk-forward over the out-of-sample span with the candidate, retraining every step_days.

    Training windows reach back into the data before the span, never into it.

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
    return walk_forward_with_params(
        frame[frame.index < end], params, candidate, test_start=start, test_end=end
    )


@dataclass(frozen=True)
class Evaluation:
    """The out-of-sample walk-forward and its metrics document (reports/metrics.json)."""

    result: BacktestResult
    document: dict

    @property
    def predictions(self) -> pd.DataFrame:
        return self.result.predictions

    def daily_equity(self) -> pd.DataFrame:
        """Each strategy's equity at the end of every day (dvc plots' equity.csv)."""
        daily = equity_curves(self.predictions).resample("1D").last()
        daily.index = daily.index.strftime("%Y-%m-%d")
        return daily.rename_axis("day")

    def headline(self) -> dict[str, float]:
        """The scalars a pipeline UI shows: the model's, the significance and every baseline's."""
        model_metrics, significance = self.document["model"], self.document["significance"]
        keys = ("cumulative_return", "return_before_fees", "sharpe", "max_drawdown", "accuracy",
                "classifier_accuracy", "roc_auc", "trades")  # fmt: skip
        values = {k: model_metrics[k] for k in keys}
        values |= {k: significance[k] for k in ("p_value", "deflated_sharpe")}
        values |= {
            f"{n}_return": b["cumulative_return"] for n, b in self.document["baselines"].items()
        }
        return {k: float("nan") if v is None else float(v) for k, v in values.items()}


def evaluate(frame: pd.DataFrame, params: Params, tuned: BestParams) -> Evaluation:
    """The tuned candidate walked forward out of sample, scored against the baselines.

    Raises:
        KlinecastError: the out-of-sample span holds no feature rows.
    """
    result = out_of_sample(frame, params, tuned.candidate)
    document = metrics_document(
        result, params, tuned.candidate, search=tuned.search, in_sample=tuned.in_sample
    )
    return Evaluation(result, document)


def equity_curves(predictions: pd.DataFrame) -> pd.DataFrame:
    """Equity after fees (starting at 1) of the model and every baseline, hour by hour."""
    columns = {"model": "strategy_return"} | {
        c[: -len("_return")]: c
        for c in predictions.columns
        if c.endswith("_return") and c not in ("strategy_return", "next_return")
    }
    return pd.DataFrame({name: np.cumprod(1 + predictions[c]) for name, c in columns.items()})


def metrics_document(
    result: BacktestResult,
    params: Params,
    candidate: model.Candidate,
    *,
    search: dict | None = None,
    in_sample: dict | None = None,
) -> dict:
    """metrics.json: the model and every baseline on the same out-of-sample hours, with the
    statistics that tell an edge from luck.

    Args:
        search: tune's search record (trials_run, sharpe_variance, trials_that_trade).
        in_sample: the best trial's in-sample summary, for the report's side-by-side.
    """
    p = result.predictions
    search = search or {"trials_run": 1, "sharpe_variance": 0.0, "trials_that_trade": None}
    best = result.best_baseline
    returns = p["strategy_return"].to_numpy()
    p_value = stats.bootstrap_p_value(
        returns,
        p[f"{best}_return"].to_numpy(),
        reps=params.backtest.bootstrap_reps,
        seed=params.tune.seed,
    )
    deflated = stats.deflated_sharpe(
        returns, trials=int(search["trials_run"]), sharpe_variance=float(search["sharpe_variance"])
    )
    return {
        "span": {
            "first_hour": p.index[0].isoformat(),
            "last_hour": p.index[-1].isoformat(),
            "hours": len(p),
            "folds": result.folds,
        },
        "fee_per_side": params.backtest.fee,
        "candidate": candidate.as_dict(),
        "hyperparams": candidate.hp.as_dict(),
        "model": result.model.as_dict(),
        "baselines": {name: m.as_dict() for name, m in result.baselines.items()},
        "excess_return": result.excess_returns,
        "significance": {
            "best_baseline": best,
            "p_value": p_value,
            "test": "SPA (arch), stationary bootstrap, model vs best baseline, hourly after fees",
            "bootstrap_reps": params.backtest.bootstrap_reps,
            "deflated_sharpe": deflated,
            "probabilistic_sharpe": result.model.probabilistic_sharpe,
            "trials_run": int(search["trials_run"]),
            "trials_that_trade": search.get("trials_that_trade"),
            "luck_sharpe_annualised": stats.expected_max_sharpe(
                trials=int(search["trials_run"]), sharpe_variance=float(search["sharpe_variance"])
            )
            * np.sqrt(24 * 365),
        },
        "per_fold": per_fold(p, baselines=list(result.baselines)),
        "per_month": per_month(p, baselines=list(result.baselines)),
        "calibration": calibration(p),
        "in_sample": in_sample or {},
    }


def per_fold(predictions: pd.DataFrame, *, baselines: list[str]) -> list[dict]:
    """Each walk-forward fold: its hours, the model's returns before and after fees, and every
    baseline's after fees."""
    rows = []
    for number, fold in predictions.groupby("fold", sort=True):
        gross = fold["position"] * fold["next_return"]
        rows.append(
            {
                "fold": int(number),
                "first_hour": fold.index[0].isoformat(),
                "last_hour": fold.index[-1].isoformat(),
                "hours": len(fold),
                "return_after_fees": float(np.prod(1 + fold["strategy_return"]) - 1),
                "return_before_fees": float(np.prod(1 + gross) - 1),
                "position_changes": int(np.count_nonzero(np.diff(fold["position"]))),
                "exposure": float(np.mean(fold["position"] != 0)),
                "baselines": {
                    name: float(np.prod(1 + fold[f"{name}_return"]) - 1) for name in baselines
                },
            }
        )
    return rows


def per_month(predictions: pd.DataFrame, *, baselines: list[str]) -> list[dict]:
    """Calendar months (UTC): the model's return after fees and every baseline's."""
    months = predictions.index.tz_convert("UTC").strftime("%Y-%m")
    columns = {"model": "strategy_return"} | {name: f"{name}_return" for name in baselines}
    grouped = (1 + predictions[list(columns.values())]).groupby(months).prod() - 1
    return [
        {"month": month, **{name: float(row[column]) for name, column in columns.items()}}
        for month, row in grouped.iterrows()
    ]


def calibration(predictions: pd.DataFrame, *, bins: int = 10) -> list[dict]:
    """prob_up in deciles: the mean predicted probability against how often it went up."""
    known = predictions[predictions["label"].notna()]
    if len(known) < bins:
        return []
    edges = np.unique(np.quantile(known["prob_up"], np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, known["prob_up"], side="right") - 1, 0, len(edges) - 2)
    table = []
    for b in range(len(edges) - 1):
        part = known[which == b]
        if len(part):
            table.append(
                {
                    "predicted": float(part["prob_up"].mean()),
                    "observed": float(part["label"].mean()),
                    "count": len(part),
                }
            )
    return table


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # the last training row (its label reaches horizon candles on)
    rows: int


def train_final(frame: pd.DataFrame, params: Params, candidate: model.Candidate) -> TrainedModel:
    """Trains on the last look_back_days of labelled rows up to the out-of-sample end.

    Raises:
        KlinecastError: fewer than look_back_days of data before the cut-off.
    """
    cutoff = params.split.out_of_sample.stop
    hp = candidate.hp
    known = frame[frame.index < cutoff]
    labels = horizon_labels(
        known, horizon=candidate.horizon_hours, interval=params.data.interval_delta
    )
    rows = known[labels.notna()]
    if rows.empty:
        raise KlinecastError("no labelled feature rows before the cut-off; run `dvc repro` first")
    start = rows.index[-1] - pd.Timedelta(days=hp.look_back_days) + pd.Timedelta(hours=1)
    if rows.index[0] > start + pd.Timedelta(days=1):
        raise KlinecastError(
            f"look_back_days={hp.look_back_days} reaches back to {start:%Y-%m-%d}, before the "
            f"first feature row {rows.index[0]:%Y-%m-%d}; lower look_back_days"
        )
    window = rows[rows.index >= start]
    names = list(params.features.indicators)
    booster = model.fit(
        window[names].to_numpy(dtype="float32"),
        labels.reindex(window.index).to_numpy(dtype="float32"),
        hp,
        seed=params.tune.seed,
        feature_names=names,
    )
    return TrainedModel(booster, window.index[0], window.index[-1], len(window))


def final_model(
    frame: pd.DataFrame,
    params: Params,
    candidate: model.Candidate,
    *,
    metrics: dict,
    data_version: dict[str, str],
) -> tuple[xgb.Booster, ArtifactMetadata]:
    """The model to publish and its metadata: train_final, described for serving and audit."""
    trained = train_final(frame, params, candidate)
    metadata = artifact_metadata(
        trained, params=params, candidate=candidate, metrics=metrics, data_version=data_version
    )
    return trained.booster, metadata


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


def gate(metrics: dict, complexity: model.Complexity, params: PublishParams) -> Gate:
    """The publish gate over metrics.json (evaluate's document) and the final model's trees.

    Raises:
        KlinecastError: the metrics lack what the gate reads (an older metrics.json).
    """
    try:
        excess = float(metrics["excess_return"][params.gate_baseline])
        significance = metrics["significance"]
        p_value = float(significance["p_value"])
        trades = int(metrics["model"]["trades"])
    except (KeyError, TypeError, ValueError):
        raise KlinecastError(
            f"the metrics lack the excess return over {params.gate_baseline} or the p-value; "
            "rerun evaluate"
        ) from None
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
        searched = significance.get("trials_that_trade")
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
                f"p-value against the best baseline ({significance['best_baseline']}) "
                f"{p_value:.3f} {'<=' if p_held else '>'} {params.gate_max_p_value}",
            ),
            Condition(
                "not_degenerate",
                not thin,
                f"not degenerate: {shape}" if not thin else f"degenerate: {'; '.join(thin)}",
            ),
        )
    )


def classification_summary(predictions: pd.DataFrame, *, roc_points: int = 101) -> dict:
    """Confusion matrix (rows: actual down/up) and a ROC curve thinned to ~roc_points points."""
    from sklearn.metrics import confusion_matrix, roc_curve

    known = predictions[predictions["label"].notna()]
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
