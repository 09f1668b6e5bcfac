"""The final model: one booster fitted on the last look_back_days of labelled rows before the
out-of-sample end, with the tuned hyperparameters and label horizon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import model, strategy
from klinecast.research.features import horizon_labels


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # the last training row (its label reaches horizon candles on)
    rows: int


def train_final(
    frame: pd.DataFrame,
    params: Params,
    candidate: model.Candidate,
    *,
    pool: dict[str, pd.DataFrame] | None = None,
) -> TrainedModel:
    """Trains on the last look_back_days of labelled rows up to the out-of-sample end (all of
    them for an anchored window).

    Args:
        pool: symbol -> features: train the pooled model on every symbol's rows in that
            window, stacked in symbol order (`frame` is then not read).

    Raises:
        KlinecastError: fewer than look_back_days of data before the cut-off, or a primary
            that proposes no bet in the training window.
    """
    cutoff = params.split.out_of_sample.stop
    hp = candidate.hp
    labelled = {}
    frames = pool if pool is not None else {"own": frame}  # a symbol's own model: its rows alone
    for symbol in sorted(frames):
        known = frames[symbol][frames[symbol].index < cutoff]
        labels = horizon_labels(
            known, horizon=candidate.horizon_hours, interval=params.data.interval_delta
        )
        if labels.notna().any():
            labelled[symbol] = (known[labels.notna()], labels)
    if not labelled:
        raise KlinecastError("no labelled feature rows before the cut-off; run `dvc repro` first")
    first = min(rows.index[0] for rows, _ in labelled.values())
    last = max(rows.index[-1] for rows, _ in labelled.values())
    start = last - pd.Timedelta(days=hp.look_back_days) + pd.Timedelta(hours=1)
    if hp.anchored:  # all the history up to the cut-off
        start = first
    if first > start + pd.Timedelta(days=1):
        raise KlinecastError(
            f"look_back_days={hp.look_back_days} reaches back to {start:%Y-%m-%d}, before the "
            f"first feature row {first:%Y-%m-%d}; lower look_back_days"
        )
    names = list(params.features.names)
    rule = candidate.rule
    windows = [(rows[rows.index >= start], labels) for rows, labels in labelled.values()]
    # a meta-labelled model learns only from the hours its primary proposes a bet
    windows = [(strategy.bets_of(w, rule), y) for w, y in windows]
    if not any(len(w) for w, _ in windows):
        raise KlinecastError(
            f"the primary {rule.primary} proposes no bet in the training window from "
            f"{start:%Y-%m-%d}; widen look_back_days or choose another primary"
        )
    x = [w[names].to_numpy(dtype="float32") for w, _ in windows]
    y = [labels.reindex(w.index).to_numpy(dtype="float32") for w, labels in windows]
    weights = [
        model.training_weights(hp, w.index, horizon_hours=candidate.horizon_hours)
        for w, _ in windows
    ]
    booster = model.fit(
        np.concatenate(x),
        np.concatenate(y),
        hp,
        seed=params.tune.seed,
        feature_names=names,
        weights=None if any(w is None for w in weights) else np.concatenate(weights),
    )
    train_start = min(w.index[0] for w, _ in windows if len(w))
    train_end = max(w.index[-1] for w, _ in windows if len(w))
    return TrainedModel(booster, train_start, train_end, sum(len(w) for w, _ in windows))
