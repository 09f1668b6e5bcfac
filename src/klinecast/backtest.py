"""Walk-forward folds, strategy returns after fees, metrics and naive baselines.

Timing, for a feature row indexed by open_time t: its candle closes at t + 1h, when the model
predicts and the strategy takes its position; the position earns `next_return`, the return of
candle t + 1h. A fold trains on rows [test_start - look_back, test_start) and tests on
[test_start, test_start + step); the last training label (candle test_start's direction) is
known at test_start + 1h, the moment the first test prediction is made, so no fold trains on
anything the test period has not yet revealed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from klinecast import model
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.features import LABEL, NEXT_RETURN

HOURS_PER_YEAR = 24 * 365
BASELINES = ("buy_and_hold", "always_short", "momentum", "coin_flip")


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: train on [train_start, test_start), test on [test_start, test_end)."""

    number: int
    train_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_rows: slice  # positions in the index the folds were made from
    test_rows: slice


def walk_forward_folds(
    index: pd.DatetimeIndex,
    *,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    train_hours: int,
    step_hours: int,
) -> Iterator[Fold]:
    """Yields the seed's fixed-size sliding windows over a sorted index.

    Test windows of step_hours tile [test_start, test_end); each is preceded by a training
    window of train_hours. Windows without rows (inside a data gap) are skipped.

    Raises:
        ValueError: a window length is not positive.
    """
    if train_hours < 1 or step_hours < 1:
        raise ValueError(f"train_hours ({train_hours}) and step_hours ({step_hours}) must be >= 1")
    train, step = pd.Timedelta(hours=train_hours), pd.Timedelta(hours=step_hours)
    start = test_start
    number = 0
    while start < test_end:
        end = min(start + step, test_end)
        i0, i1, i2 = index.searchsorted([start - train, start, end])
        if i2 > i1 and i1 > i0:
            yield Fold(number, start - train, start, end, slice(i0, i1), slice(i1, i2))
            number += 1
        start += step


def positions_from_proba(proba: np.ndarray, *, neutral_band: float = 0.0) -> np.ndarray:
    """Long (+1) above 0.5 + band, short (-1) below 0.5 - band, flat (0) in between."""
    return np.where(proba > 0.5 + neutral_band, 1, np.where(proba < 0.5 - neutral_band, -1, 0))


def strategy_returns(positions: np.ndarray, next_returns: np.ndarray, *, fee: float) -> np.ndarray:
    """Hourly returns of holding `positions`, after a fee per side on every change.

    The book starts flat and is closed after the last hour, so a flip pays 2 x fee, entering
    or leaving pays 1 x fee, and buy-and-hold pays 2 x fee in total.
    """
    pos = np.asarray(positions, dtype=float)
    turnover = np.abs(np.diff(pos, prepend=0.0))
    returns = pos * np.asarray(next_returns, dtype=float) - fee * turnover
    if len(returns):
        returns[-1] -= fee * abs(pos[-1])
    return returns


@dataclass(frozen=True)
class Metrics:
    """How a strategy did over a set of hours."""

    cumulative_return: float
    annualized_return: float
    sharpe: float
    max_drawdown: float
    accuracy: float | None  # share of hours in the market whose direction was right
    roc_auc: float | None
    log_loss: float | None
    trades: int  # position changes, the final close included
    exposure: float  # share of hours in the market
    hours: int

    def as_dict(self) -> dict:
        return asdict(self)


def strategy_metrics(
    positions: np.ndarray,
    next_returns: np.ndarray,
    labels: np.ndarray,
    *,
    fee: float,
    proba: np.ndarray | None = None,
) -> Metrics:
    """Metrics of one strategy; probability metrics only when proba is given."""
    pos = np.asarray(positions, dtype=float)
    returns = strategy_returns(pos, next_returns, fee=fee)
    equity = np.cumprod(1.0 + returns)
    hours = len(returns)
    final = float(equity[-1]) if hours else 1.0
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    std = float(np.std(returns)) if hours > 1 else 0.0
    in_market = pos != 0
    changes = np.count_nonzero(np.diff(pos, prepend=0.0)) + (1 if hours and pos[-1] != 0 else 0)
    accuracy = None
    if in_market.any():
        accuracy = float(np.mean((pos[in_market] > 0) == (labels[in_market] > 0.5)))
    auc = loss = None
    if proba is not None and hours:
        loss = float(log_loss(labels, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1]))
        if len(np.unique(labels)) == 2:
            auc = float(roc_auc_score(labels, proba))
    return Metrics(
        cumulative_return=final - 1.0,
        annualized_return=final ** (HOURS_PER_YEAR / hours) - 1.0 if hours and final > 0 else -1.0,
        sharpe=float(np.mean(returns)) / std * np.sqrt(HOURS_PER_YEAR) if std > 0 else 0.0,
        max_drawdown=float(np.min(equity / peaks - 1.0)) if hours else 0.0,
        accuracy=accuracy,
        roc_auc=auc,
        log_loss=loss,
        trades=int(changes),
        exposure=float(np.mean(in_market)) if hours else 0.0,
        hours=hours,
    )


def baseline_positions(
    index: pd.DatetimeIndex, next_returns: np.ndarray, *, interval: dt.timedelta, seed: int
) -> dict[str, np.ndarray]:
    """Positions of the naive strategies on the same hours.

    momentum goes with the direction of the candle that just closed (the previous row's
    next_return, known at decision time), flat when that candle is missing.
    """
    n = len(index)
    previous_is_adjacent = np.zeros(n, dtype=bool)
    previous_is_adjacent[1:] = np.diff(index.asi8) == pd.Timedelta(interval).value
    last_return = np.full(n, np.nan)
    last_return[1:] = np.asarray(next_returns, dtype=float)[:-1]
    last_return[~previous_is_adjacent] = np.nan
    rng = np.random.default_rng(seed)
    return {
        "buy_and_hold": np.ones(n, dtype=int),
        "always_short": -np.ones(n, dtype=int),
        "momentum": np.nan_to_num(np.sign(last_return)).astype(int),
        "coin_flip": rng.choice(np.array([-1, 1]), size=n),
    }


@dataclass(frozen=True)
class BacktestResult:
    predictions: (
        pd.DataFrame
    )  # per test hour: prob_up, position, label, next_return, strategy_return
    model: Metrics
    baselines: dict[str, Metrics]
    folds: int

    @property
    def excess_returns(self) -> dict[str, float]:
        """The model's cumulative return minus each baseline's."""
        return {
            name: self.model.cumulative_return - m.cumulative_return
            for name, m in self.baselines.items()
        }


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose next candle is known: the only ones that can train or be scored."""
    return frame[frame[LABEL].notna()]


def walk_forward(
    frame: pd.DataFrame,
    *,
    hp: model.HyperParams,
    feature_names: Sequence[str],
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    step_days: int,
    fee: float,
    neutral_band: float,
    interval: dt.timedelta,
    coin_flip_seed: int = 0,
    seed: int = 0,
    nthread: int = 0,
    after_fold: Callable[[Fold, float], None] | None = None,
) -> BacktestResult:
    """Retrains at every step and predicts the following step, as the seed did.

    Args:
        frame: features with label and next_return (unlabelled rows are ignored).
        after_fold: called with each fold and the cumulative return after fees so far; it may
            raise to stop early (the tuner's pruning hook).

    Raises:
        KlinecastError: no fold has test rows, or the data before test_start is shorter than
            look_back_days.
    """
    rows = labelled_rows(frame)
    first_needed = test_start - pd.Timedelta(days=hp.look_back_days)
    if rows.empty or rows.index[0] > first_needed + pd.Timedelta(days=1):
        first = rows.index[0] if len(rows) else "none"
        raise KlinecastError(
            f"look_back_days={hp.look_back_days} needs features from {first_needed:%Y-%m-%d} "
            f"to train the first fold before {test_start:%Y-%m-%d}, but they start at {first}; "
            "lower look_back_days or move the span later"
        )
    folds = list(
        walk_forward_folds(
            rows.index,
            test_start=test_start,
            test_end=test_end,
            train_hours=hp.look_back_days * 24,
            step_hours=step_days * 24,
        )
    )
    if not folds:
        raise KlinecastError(
            f"no labelled feature rows between {test_start:%Y-%m-%d} and {test_end:%Y-%m-%d} "
            f"(the features cover {rows.index[0]:%Y-%m-%d} .. {rows.index[-1]:%Y-%m-%d})"
        )
    features = rows[list(feature_names)].to_numpy(dtype=np.float32)
    labels = rows[LABEL].to_numpy(dtype=np.float32)
    next_returns = rows[NEXT_RETURN].to_numpy(dtype=float)
    proba = np.empty(folds[-1].test_rows.stop - folds[0].test_rows.start, dtype=float)
    offset = folds[0].test_rows.start
    for fold in folds:
        booster = model.fit(
            features[fold.train_rows],
            labels[fold.train_rows],
            hp,
            seed=seed,
            nthread=nthread,
            feature_names=list(feature_names),
        )
        part = slice(fold.test_rows.start - offset, fold.test_rows.stop - offset)
        proba[part] = model.predict_proba(booster, features[fold.test_rows])
        if after_fold is not None:
            done = slice(offset, fold.test_rows.stop)
            position = positions_from_proba(proba[: part.stop], neutral_band=neutral_band)
            so_far = np.prod(1.0 + strategy_returns(position, next_returns[done], fee=fee)) - 1.0
            after_fold(fold, float(so_far))
    tested = slice(offset, folds[-1].test_rows.stop)
    index = rows.index[tested]
    position = positions_from_proba(proba, neutral_band=neutral_band)
    label = labels[tested].astype(float)
    ret = next_returns[tested]
    baselines = baseline_positions(index, ret, interval=interval, seed=coin_flip_seed)
    predictions = pd.DataFrame(
        {
            "prob_up": proba,
            "position": position,
            "label": label,
            "next_return": ret,
            "strategy_return": strategy_returns(position, ret, fee=fee),
            **{
                f"{name}_return": strategy_returns(p, ret, fee=fee) for name, p in baselines.items()
            },
        },
        index=index,
    )
    return BacktestResult(
        predictions=predictions,
        model=strategy_metrics(position, ret, label, fee=fee, proba=proba),
        baselines={name: strategy_metrics(p, ret, label, fee=fee) for name, p in baselines.items()},
        folds=len(folds),
    )


def walk_forward_with_params(
    frame: pd.DataFrame,
    params: Params,
    hp: model.HyperParams,
    *,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    nthread: int = 0,
    after_fold: Callable[[Fold, float], None] | None = None,
) -> BacktestResult:
    """walk_forward with the features, step, fee, band and seeds that params set."""
    bt = params.backtest
    return walk_forward(
        frame,
        hp=hp,
        feature_names=params.features.indicators,
        test_start=test_start,
        test_end=test_end,
        step_days=bt.step_days,
        fee=bt.fee,
        neutral_band=bt.neutral_band,
        interval=params.data.interval_delta,
        coin_flip_seed=bt.coin_flip_seed,
        seed=params.tune.seed,
        nthread=nthread,
        after_fold=after_fold,
    )
