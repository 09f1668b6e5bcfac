"""`klinecast evaluate` and `klinecast train`: out-of-sample walk-forward, and the final model."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import xgboost as xgb

from klinecast import model
from klinecast.backtest import BacktestResult, labelled_rows, walk_forward_with_params
from klinecast.config import Params
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
