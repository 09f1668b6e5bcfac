"""The final model: one booster fitted on the last look_back_days of labelled rows before the
out-of-sample end, with the tuned hyperparameters and label horizon."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import xgboost as xgb

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import model
from klinecast.research.features import horizon_labels


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # the last training row (its label reaches horizon candles on)
    rows: int


def train_final(frame: pd.DataFrame, params: Params, candidate: model.Candidate) -> TrainedModel:
    """Trains on the last look_back_days of labelled rows up to the out-of-sample end (all of
    them for an anchored window).

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
    if hp.anchored:  # all the history up to the cut-off
        start = rows.index[0]
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
