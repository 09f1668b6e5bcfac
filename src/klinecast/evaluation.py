"""`klinecast evaluate` and `klinecast train`: out-of-sample walk-forward, and the final model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from klinecast import model
from klinecast.backtest import BacktestResult, labelled_rows, walk_forward_with_params
from klinecast.config import Params, PublishParams
from klinecast.errors import KlinecastError
from klinecast.tuning import span_bounds


def out_of_sample(frame: pd.DataFrame, params: Params, hp: model.HyperParams) -> BacktestResult:
    """Walk-forward over the out-of-sample span with hp, retraining every step_days.

    Training windows reach back into the data before the span, never into it.

    Raises:
        KlinecastError: the span holds no feature rows; the message says what to change.
    """
    start, end = span_bounds(params.split.out_of_sample_start, params.split.out_of_sample_end)
    rows = labelled_rows(frame)
    inside = rows[(rows.index >= start) & (rows.index < end)]
    if inside.empty:
        first, last = (rows.index[0], rows.index[-1]) if len(rows) else (None, None)
        raise KlinecastError(
            f"the out-of-sample span {params.split.out_of_sample_start} .. "
            f"{params.split.out_of_sample_end} has no feature rows: the data covers "
            f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}. Set split.out_of_sample_start/end inside the "
            "data (and split.in_sample_* before it), or ingest newer data (make data)"
            if first is not None
            else "there are no labelled feature rows at all; run `make data` and `dvc repro`"
        )
    return walk_forward_with_params(
        rows[rows.index < end], params, hp, test_start=start, test_end=end
    )


def metrics_document(result: BacktestResult, params: Params, hp: model.HyperParams) -> dict:
    """metrics.json: the model and every baseline on the same out-of-sample hours."""
    predictions = result.predictions
    return {
        "span": {
            "first_hour": predictions.index[0].isoformat(),
            "last_hour": predictions.index[-1].isoformat(),
            "hours": len(predictions),
            "folds": result.folds,
        },
        "fee_per_side": params.backtest.fee,
        "hyperparams": hp.as_dict(),
        "model": result.model.as_dict(),
        "baselines": {name: m.as_dict() for name, m in result.baselines.items()},
        "excess_return": result.excess_returns,
    }


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # the last training row (its label is the candle after it)
    rows: int


def train_final(frame: pd.DataFrame, params: Params, hp: model.HyperParams) -> TrainedModel:
    """Trains on the last look_back_days of labelled rows up to the out-of-sample end.

    Raises:
        KlinecastError: fewer than look_back_days of data before the cut-off.
    """
    _, cutoff = span_bounds(params.split.out_of_sample_start, params.split.out_of_sample_end)
    rows = labelled_rows(frame)
    rows = rows[rows.index < cutoff]
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
        window["label"].to_numpy(dtype="float32"),
        hp,
        seed=params.tune.seed,
        feature_names=names,
    )
    return TrainedModel(booster, window.index[0], window.index[-1], len(window))


@dataclass(frozen=True)
class Gate:
    """Whether the model may become `production`: its excess return over a baseline."""

    baseline: str
    min_excess_return: float
    excess_return: float

    @property
    def passed(self) -> bool:
        return self.excess_return >= self.min_excess_return

    def as_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "min_excess_return": self.min_excess_return,
            "excess_return": self.excess_return,
            "passed": self.passed,
        }


def gate(metrics: dict, params: PublishParams) -> Gate:
    """The evaluation gate over metrics.json (evaluate's document)."""
    try:
        excess = float(metrics["excess_return"][params.gate_baseline])
    except (KeyError, TypeError, ValueError):
        raise KlinecastError(
            f"the metrics hold no excess return over {params.gate_baseline}; rerun evaluate"
        ) from None
    return Gate(params.gate_baseline, params.gate_min_excess_return, excess)


def classification_summary(predictions: pd.DataFrame, *, roc_points: int = 101) -> dict:
    """Confusion matrix (rows: actual down/up) and a ROC curve thinned to ~roc_points points."""
    from sklearn.metrics import confusion_matrix, roc_curve

    actual = predictions["label"].to_numpy() > 0.5
    predicted = predictions["prob_up"].to_numpy() > 0.5
    matrix = confusion_matrix(actual, predicted, labels=[False, True])
    fpr, tpr, thresholds = roc_curve(actual, predictions["prob_up"].to_numpy())
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(roc_points, len(fpr))).round().astype(int))
    return {
        "categories": ["down", "up"],
        "confusion_matrix": matrix.tolist(),
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        # roc_curve's first threshold is +inf, which JSON cannot hold
        "thresholds": np.minimum(thresholds[keep], 1.0).tolist(),
    }
