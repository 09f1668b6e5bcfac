"""Walk-forward folds with purging, strategy returns before and after fees, metrics, baselines.

Timing, for a feature row indexed by open_time t: its candle closes at t + 1h, when the model
predicts and the strategy takes its position; the position earns `next_return`, the return of
candle t + 1h. A fold tests on [test_start, test_start + step). Its first prediction is made
when candle test_start closes, so a training label may use candles up to test_start and no
later: with labels `h` candles ahead, training rows are [test_start - look_back,
test_start - (h - 1)h), and the h - 1 rows before them whose label would reach into the test
period are purged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from klinecast.config import NO_PRIMARY, BacktestParams, Params
from klinecast.errors import KlinecastError
from klinecast.research import baselines, model, stats, strategy
from klinecast.research.features import CLOSE, NEXT_RETURN, horizon_labels
from klinecast.research.scorecard import Metrics
from klinecast.research.stats import HOURS_PER_YEAR


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: train on [train_start, train_end), test on [test_start, test_end).

    train_end is test_start minus the purge (horizon - 1 hours). The slices are positions in
    the index the training rows and the test rows were taken from.
    """

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_rows: slice
    test_rows: slice


def walk_forward_folds(
    index: pd.DatetimeIndex,
    *,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    train_hours: int | None,
    step_hours: int,
    horizon_hours: int = 1,
    train_index: pd.DatetimeIndex | None = None,
) -> Iterator[Fold]:
    """Yields the seed's fixed-size sliding windows, purged for the label horizon.

    Test windows of step_hours tile [test_start, test_end) over `index`; each is preceded by a
    training window of train_hours over `train_index` (default: `index`; train_hours None:
    anchored, from the first row of train_index), which ends
    horizon_hours - 1 hours before the test window so that no training label uses a candle
    that closes after the first test prediction. Windows without rows are skipped.

    Raises:
        ValueError: a window length is not positive.
    """
    if (train_hours is not None and train_hours < 1) or step_hours < 1 or horizon_hours < 1:
        raise ValueError(
            f"train_hours ({train_hours}), step_hours ({step_hours}) and horizon_hours "
            f"({horizon_hours}) must be >= 1"
        )
    train_index = index if train_index is None else train_index
    step = pd.Timedelta(hours=step_hours)
    train = None if train_hours is None else pd.Timedelta(hours=train_hours)
    purge = pd.Timedelta(hours=horizon_hours - 1)
    start = test_start
    number = 0
    while start < test_end:
        end = min(start + step, test_end)
        first = train_index[0] if train is None and len(train_index) else start - (train or step)
        t0, t1 = train_index.searchsorted([first, start - purge])
        i1, i2 = index.searchsorted([start, end])
        if i2 > i1 and t1 > t0:
            yield Fold(number, first, start - purge, start, end, slice(t0, t1), slice(i1, i2))
            number += 1
        start += step


def position_return(position, previous, next_return, *, cost: float):
    """The return of holding `position` for one hour, having held `previous` the hour before,
    after `cost` per unit of change (the fee and the slippage, per side): the one cost formula
    of the backtest and the trader's ledger (scalars or arrays)."""
    return position * next_return - cost * np.abs(position - previous)


def strategy_returns(
    positions: np.ndarray, next_returns: np.ndarray, *, cost: float
) -> np.ndarray:
    """Hourly returns of holding `positions`, after `cost` per side on every change.

    The book starts flat and is closed after the last hour, so a flip pays 2 x cost, entering
    or leaving pays 1 x cost, and buy-and-hold pays 2 x cost in total.
    """
    pos = np.asarray(positions, dtype=float)
    previous = np.concatenate([[0.0], pos[:-1]])
    returns = position_return(pos, previous, np.asarray(next_returns, dtype=float), cost=cost)
    if len(returns):
        returns[-1] -= cost * abs(pos[-1])  # the close after the last hour
    return returns


def _turnover(pos: np.ndarray) -> np.ndarray:
    """|change of position| per hour, the close after the last hour included."""
    turnover = np.abs(np.diff(pos, prepend=0.0))
    if len(turnover):
        turnover[-1] += abs(pos[-1])
    return turnover


def _holding_runs(pos: np.ndarray) -> np.ndarray:
    """Lengths (hours) of the runs of one unchanged non-zero position."""
    if not len(pos):
        return np.array([], dtype=int)
    changes = np.flatnonzero(np.diff(pos) != 0) + 1
    starts = np.concatenate([[0], changes])
    lengths = np.diff(np.concatenate([starts, [len(pos)]]))
    return lengths[pos[starts] != 0]


def strategy_metrics(
    positions: np.ndarray,
    next_returns: np.ndarray,
    *,
    fee: float,
    slippage: float = 0.0,
    proba: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    horizon_hours: int = 1,
) -> Metrics:
    """Metrics of one strategy, after the fee and the slippage on every change; the
    classifier's only when proba and its labels (of horizon_hours each) are given.

    The classifier accuracy's interval counts the labels as the independent ones they are
    worth (`stats.effective_labels`): consecutive labels of h hours share h - 1 of their hours.
    """
    pos = np.asarray(positions, dtype=float)
    next_returns = np.asarray(next_returns, dtype=float)
    returns = strategy_returns(pos, next_returns, cost=fee + slippage)
    equity = np.cumprod(1.0 + returns)
    hours = len(returns)
    final = float(equity[-1]) if hours else 1.0
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    in_market = pos != 0
    # right when the hour went the position's way; an unchanged close is right for neither side
    right = int(np.sum(pos[in_market] * next_returns[in_market] > 0))
    n_in = int(in_market.sum())
    low, high = stats.wilson_interval(right, n_in) if n_in else (None, None)
    turnover = _turnover(pos)
    runs = _holding_runs(pos)
    found = Metrics(
        cumulative_return=final - 1.0,
        return_before_fees=float(np.prod(1.0 + pos * next_returns)) - 1.0,
        annualized_return=final ** (HOURS_PER_YEAR / hours) - 1.0 if hours and final > 0 else -1.0,
        sharpe=stats.sharpe(returns) * float(np.sqrt(HOURS_PER_YEAR)),
        probabilistic_sharpe=stats.probabilistic_sharpe(returns),
        max_drawdown=float(np.min(equity / peaks - 1.0)) if hours else 0.0,
        fees_paid=float(fee * turnover.sum()),
        slippage_paid=float(slippage * turnover.sum()),
        turnover=float(turnover.sum()),
        trades=int(np.count_nonzero(np.diff(pos, prepend=0.0)) + (hours and pos[-1] != 0)),
        exposure=float(np.mean(in_market)) if hours else 0.0,
        mean_holding_hours=float(runs.mean()) if len(runs) else None,
        accuracy=right / n_in if n_in else None,
        accuracy_low=low,
        accuracy_high=high,
        hours_in_market=n_in,
        hours=hours,
    )
    if proba is None or labels is None:
        return found
    known = np.isfinite(labels) & np.isfinite(proba)  # (a skipped fold's hours have no proba)
    y, p = labels[known], np.clip(proba[known], 1e-7, 1 - 1e-7)
    if not len(y):
        return found
    hits = int(np.sum((p > 0.5) == (y > 0.5)))
    independent = float(stats.label_uniqueness(known, horizon_hours)[known].sum())
    low, high = stats.wilson_interval(hits / len(y) * independent, independent)
    return dataclasses.replace(
        found,
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        roc_auc=float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None,
        classifier_accuracy=hits / len(y),
        classifier_accuracy_low=low,
        classifier_accuracy_high=high,
    )


@dataclass(frozen=True)
class BacktestResult:
    #: per test hour: prob_up, position, label (the model's horizon), next_return, fold,
    #: strategy_return (after fees), proposed (a meta-labelled model's: its primary proposed
    #: a bet), and <baseline>_position / <baseline>_return
    predictions: pd.DataFrame
    model: Metrics
    baselines: dict[str, Metrics]
    folds: int
    #: test hours no fold traded (a fold skipped for want of training rows): held flat
    skipped_hours: int = 0

    @property
    def excess_returns(self) -> dict[str, float]:
        """The model's cumulative return after fees minus each baseline's."""
        return {
            name: self.model.cumulative_return - m.cumulative_return
            for name, m in self.baselines.items()
        }

    @property
    def best_baseline(self) -> str:
        return max(self.baselines, key=lambda name: self.baselines[name].cumulative_return)


def scored_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose next candle is known: the only ones a position can be scored on."""
    return frame[frame[NEXT_RETURN].notna()]


#: after_fold(fold, strategy returns so far, next_returns of the same hours)
FoldHook = Callable[[Fold, np.ndarray, np.ndarray], None]


def walk_forward(
    frame: pd.DataFrame,
    *,
    candidate: model.Candidate,
    feature_names: Sequence[str],
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    backtest: BacktestParams,
    interval: dt.timedelta,
    seed: int = 0,
    nthread: int = 0,
    after_fold: FoldHook | None = None,
) -> BacktestResult:
    """Retrains every backtest.step_days and trades the following step with the candidate's
    rule, after the fee and the slippage; the baselines trade the same hours.

    The rule's book (position and hours held) carries over from one fold to the next. Test
    hours that no fold trades (a fold skipped for want of training rows) are held flat, and
    counted.

    Args:
        frame: features with label, next_return and close (rows without a next candle are not
            scored; rows without the horizon's label do not train; the rows before test_start
            are the training windows' and the baselines' history).
        after_fold: called after each fold with the strategy's returns so far; it may raise to
            stop early.

    Raises:
        KlinecastError: no fold has test rows, the data before test_start is shorter than
            look_back_days, the frame lacks the close (features made by an older klinecast),
            or a primary proposes no bet in any training window.
    """
    if CLOSE not in frame.columns:
        raise KlinecastError(
            "the feature rows lack the close the baselines need; rerun `dvc repro features`"
        )
    hp, horizon, rule = candidate.hp, candidate.horizon_hours, candidate.rule
    cost = backtest.cost
    labels = horizon_labels(frame, horizon=horizon, interval=interval)
    labelled = frame[labels.notna()]
    # a meta-labelled model learns only from the hours its primary proposes a bet
    trainable = strategy.bets_of(labelled, rule)
    rows = scored_rows(frame)
    first_needed = test_start - pd.Timedelta(days=hp.look_back_days)
    if labelled.empty or labelled.index[0] > first_needed + pd.Timedelta(days=1):
        first = labelled.index[0] if len(labelled) else "none"
        raise KlinecastError(
            f"look_back_days={hp.look_back_days} needs features from {first_needed:%Y-%m-%d} "
            f"to train the first fold before {test_start:%Y-%m-%d}, but they start at {first}; "
            "lower look_back_days or move the span later"
        )
    if trainable.empty:
        raise KlinecastError(
            f"the primary {rule.primary} proposes no bet on any labelled row; choose another "
            "primary (tune.search_space.primary) or none"
        )
    window = {
        "test_start": test_start, "test_end": test_end, "step_hours": backtest.step_days * 24,
        "train_hours": None if hp.anchored else hp.look_back_days * 24, "horizon_hours": horizon,
    }  # fmt: skip
    folds = list(walk_forward_folds(rows.index, train_index=trainable.index, **window))
    if not folds and next(walk_forward_folds(rows.index, train_index=labelled.index, **window), None):
        raise KlinecastError(
            f"the primary {rule.primary} proposes no bet in any fold's training window before "
            f"{test_end:%Y-%m-%d}; widen look_back_days, or choose another primary or none"
        )
    if not folds:
        raise KlinecastError(
            f"no labelled feature rows between {test_start:%Y-%m-%d} and {test_end:%Y-%m-%d} "
            f"(the features cover {rows.index[0]:%Y-%m-%d} .. {rows.index[-1]:%Y-%m-%d})"
        )
    names = list(feature_names)
    train_x = trainable[names].to_numpy(dtype=np.float32)
    train_y = labels.reindex(trainable.index).to_numpy(dtype=np.float32)
    weights = model.training_weights(hp, trainable.index, horizon_hours=horizon)
    test_x = rows[names].to_numpy(dtype=np.float32)
    test_primary = strategy.primary_of(rows, rule)
    next_returns = rows[NEXT_RETURN].to_numpy(dtype=float)
    decided_at = (rows.index + pd.Timedelta(interval)).hour.to_numpy()  # when each row decides
    # from the span's first scored hour: a leading fold skipped for want of training rows is
    # held flat, as a later one is, not dropped from the span
    offset = int(rows.index.searchsorted(test_start))
    tested = slice(offset, folds[-1].test_rows.stop)
    hours = tested.stop - offset
    # every hour starts flat and unpredicted: a fold skipped between two traded ones leaves
    # its hours so (never uninitialised memory)
    proba = np.full(hours, np.nan)
    position = np.zeros(hours, dtype=np.int8)
    fold_of = np.full(hours, -1, dtype=np.int16)
    holding = strategy.FLAT
    for fold in folds:
        booster = model.fit(
            train_x[fold.train_rows], train_y[fold.train_rows], hp,
            seed=seed, nthread=nthread, feature_names=names,
            weights=None if weights is None else weights[fold.train_rows],
        )  # fmt: skip
        part = slice(fold.test_rows.start - offset, fold.test_rows.stop - offset)
        proba[part] = strategy.meta_probability(
            model.predict_proba(booster, test_x[fold.test_rows]), rule,
            test_primary[fold.test_rows],
        )  # fmt: skip
        position[part], holding = strategy.positions(
            proba[part], rule, holding, decision_hours=decided_at[fold.test_rows]
        )
        fold_of[part] = fold.number
        if after_fold is not None:
            market = next_returns[offset : fold.test_rows.stop]
            after_fold(fold, strategy_returns(position[: part.stop], market, cost=cost), market)
    return traded_result(
        rows, rows.index[tested], labels,
        proba=proba, position=position, fold_of=fold_of, folds=len(folds),
        test_end=test_end, backtest=backtest, interval=interval, horizon_hours=horizon,
        primary=rule.primary,
    )  # fmt: skip


def traded_result(
    rows: pd.DataFrame,
    index: pd.DatetimeIndex,
    labels: pd.Series,
    *,
    proba: np.ndarray,
    position: np.ndarray,
    fold_of: np.ndarray,
    folds: int,
    test_end: pd.Timestamp,
    backtest: BacktestParams,
    interval: dt.timedelta,
    horizon_hours: int = 1,
    primary: str = NO_PRIMARY,
) -> BacktestResult:
    """The result of trading `position` over the scored rows at `index` (a fold of -1: an hour
    no fold traded), beside the baselines on the same hours, after costs; `labels` are the
    model's, of horizon_hours each; a primary's own rule is one of the baselines, and the
    classifier is scored only on the hours its primary proposed a bet (`proposed`)."""
    cost = backtest.cost
    ret = rows.loc[index, NEXT_RETURN].to_numpy(dtype=float)
    label = labels.reindex(index).to_numpy(dtype=float)
    meta = {} if primary == NO_PRIMARY else {"proposed": strategy.proposed(rows.loc[index, primary])}
    scored = np.where(meta["proposed"], proba, np.nan) if meta else proba
    held = baselines.positions(
        rows[rows.index < test_end], index, params=backtest, interval=interval, primary=primary
    )
    predictions = pd.DataFrame(
        {
            "prob_up": proba,
            "position": position,
            "label": label,
            "next_return": ret,
            "fold": fold_of,
            "strategy_return": strategy_returns(position, ret, cost=cost),
            **meta,
            **{f"{name}_position": p for name, p in held.items()},
            **{f"{name}_return": strategy_returns(p, ret, cost=cost) for name, p in held.items()},
        },
        index=index,
    )
    fee, slippage = backtest.fee, backtest.slippage
    return BacktestResult(
        predictions=predictions,
        model=strategy_metrics(
            position, ret, fee=fee, slippage=slippage, proba=scored, labels=label,
            horizon_hours=horizon_hours,
        ),  # fmt: skip
        baselines={
            name: strategy_metrics(p, ret, fee=fee, slippage=slippage) for name, p in held.items()
        },
        folds=folds,
        skipped_hours=int(np.count_nonzero(fold_of < 0)),
    )


def walk_forward_with_params(
    frame: pd.DataFrame,
    params: Params,
    candidate: model.Candidate,
    *,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    nthread: int = 0,
    after_fold: FoldHook | None = None,
) -> BacktestResult:
    """walk_forward with the features, costs, baselines and seeds that params set."""
    return walk_forward(
        frame, candidate=candidate, test_start=test_start, test_end=test_end, nthread=nthread,
        after_fold=after_fold, **settings_of(params),
    )  # fmt: skip


def settings_of(params: Params) -> dict:
    """What params set for a walk-forward: the features, the costs and baselines, the candle
    length and the seed."""
    return {
        "feature_names": params.features.names,
        "backtest": params.backtest,
        "interval": params.data.interval_delta,
        "seed": params.tune.seed,
    }
