"""The pooled model: one booster fitted on every symbol's rows, traded by each symbol's rule.

The folds tile one calendar for all symbols. Each fold fits one booster on the training rows of
every symbol (in symbol order, so the booster is the same whichever symbol is being looked at),
cut and purged by the one fold function a single symbol's walk-forward uses
(`backtest.walk_forward_folds`, over the union of the symbols' hours): rows [test_start -
look_back, test_start - (h - 1)h). Each symbol then trades its own test rows with the
candidate's rule, its position carried from fold to fold. A symbol listed later joins the
folds from its first row; before it, the others train the model.

The features must mean the same for every symbol: each catalogued indicator is a ratio, a
return, an oscillator or a z-score, none a price or a volume in the symbol's own units
(`tests/research/test_pooled.py` proves that scaling a symbol's prices and volumes leaves its
features as they were).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from klinecast.book import Book
from klinecast.config import BacktestParams, Params
from klinecast.data.versions import file_digest
from klinecast.errors import KlinecastError
from klinecast.research import model, portfolio, stats, strategy
from klinecast.research.backtest import (
    BacktestResult,
    scored_rows,
    settings_of,
    traded_result,
    walk_forward_folds,
)
from klinecast.research.features import horizon_labels


class _Pool:
    """Every symbol's trainable rows stacked (symbol by symbol, each in time order), with
    their label at one horizon: what each fold's booster is fitted on."""

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        names: list[str],
        *,
        horizon: int,
        interval,
        hp: model.HyperParams,
        rule: strategy.StrategyRule = strategy.SEED_RULE,
    ):
        self.labels = {
            symbol: horizon_labels(frame, horizon=horizon, interval=interval)
            for symbol, frame in frames.items()
        }
        labelled = {s: frames[s][self.labels[s].notna()] for s in frames}
        # a meta-labelled model learns only from the hours its primary proposes a bet
        trainable = {s: strategy.bets_of(rows, rule) for s, rows in labelled.items()}
        self.x = {s: rows[names].to_numpy(dtype=np.float32) for s, rows in trainable.items()}
        self.y = {
            s: self.labels[s].reindex(rows.index).to_numpy(dtype=np.float32)
            for s, rows in trainable.items()
        }
        self.index = {s: rows.index for s, rows in trainable.items()}
        self.w = {
            s: model.training_weights(hp, index, horizon_hours=horizon)
            for s, index in self.index.items()
        }
        starts = [rows.index[0] for rows in labelled.values() if len(rows)]
        self.first = min(starts) if starts else None

    def window(
        self, start: pd.Timestamp, stop: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The rows of every symbol in [start, stop), stacked in symbol order, with their
        sample weights (None: equal)."""
        xs, ys, ws = [], [], []
        for symbol in sorted(self.index):
            lo, hi = self.index[symbol].searchsorted([start, stop])
            xs.append(self.x[symbol][lo:hi])
            ys.append(self.y[symbol][lo:hi])
            if self.w[symbol] is not None:
                ws.append(self.w[symbol][lo:hi])
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws) if ws else None


def walk_forward_pooled(
    frames: Mapping[str, pd.DataFrame],
    *,
    candidate: model.Candidate,
    feature_names: Sequence[str],
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    backtest: BacktestParams,
    interval: dt.timedelta,
    seed: int = 0,
    nthread: int = 0,
) -> dict[str, BacktestResult]:
    """Retrains one pooled booster every backtest.step_days and trades each symbol's following
    step with the candidate's rule, after costs, beside each symbol's baselines.

    Args:
        frames: symbol -> its features with label, next_return and close (`walk_forward`'s
            frame; the rows before test_start are training and baseline history).

    Returns:
        symbol -> its walk-forward; a symbol with no row in [test_start, test_end) is left out.

    Raises:
        KlinecastError: no symbol has rows look_back_days before test_start, or none has a
            test row.
    """
    hp, horizon = candidate.hp, candidate.horizon_hours
    names = list(feature_names)
    rule = candidate.rule
    pool = _Pool(frames, names, horizon=horizon, interval=interval, hp=hp, rule=rule)
    first_needed = test_start - pd.Timedelta(days=hp.look_back_days)
    if pool.first is None or pool.first > first_needed + pd.Timedelta(days=1):
        raise KlinecastError(
            f"look_back_days={hp.look_back_days} needs features from {first_needed:%Y-%m-%d} "
            f"to train the first fold before {test_start:%Y-%m-%d}, but the pooled symbols' "
            f"start at {pool.first or 'none'}; lower look_back_days or move the span later"
        )
    tested = {}
    for symbol, frame in frames.items():
        rows = scored_rows(frame)
        rows = rows[rows.index < test_end]
        index = rows.index[rows.index >= test_start]
        if len(index):
            tested[symbol] = (rows, index)
    if not any(len(index) for index in pool.index.values()):
        raise KlinecastError(
            f"the primary {rule.primary} proposes no bet on any symbol's labelled rows; choose "
            "another primary (tune.search_space.primary) or none"
        )
    if not tested:
        raise KlinecastError(
            f"no symbol has labelled feature rows between {test_start:%Y-%m-%d} and "
            f"{test_end:%Y-%m-%d}"
        )
    proba = {s: np.full(len(index), np.nan) for s, (_, index) in tested.items()}
    position = {s: np.zeros(len(index), dtype=np.int8) for s, (_, index) in tested.items()}
    fold_of = {s: np.full(len(index), -1, dtype=np.int16) for s, (_, index) in tested.items()}
    holding = dict.fromkeys(tested, strategy.FLAT)
    folds = dict.fromkeys(tested, 0)
    # one calendar for every symbol: the folds of the union of their hours, cut and purged by
    # the one fold function a single symbol's walk-forward uses
    schedule = walk_forward_folds(
        _union(index for _, index in tested.values()),
        train_index=_union(pool.index.values()),
        test_start=test_start,
        test_end=test_end,
        train_hours=None if hp.anchored else hp.look_back_days * 24,
        step_hours=backtest.step_days * 24,
        horizon_hours=horizon,
    )
    for fold in schedule:
        train_x, train_y, weights = pool.window(fold.train_start, fold.train_end)
        booster = model.fit(
            train_x, train_y, hp, seed=seed, nthread=nthread, feature_names=names, weights=weights
        )
        for symbol, (rows, index) in tested.items():
            part = slice(*index.searchsorted([fold.test_start, fold.test_end]))
            if part.stop == part.start:
                continue
            test = rows.loc[index[part]]
            proba[symbol][part] = strategy.meta_probability(
                model.predict_proba(booster, test[names].to_numpy(dtype=np.float32)), rule,
                strategy.primary_of(test, rule),
            )  # fmt: skip
            decided_at = (index[part] + pd.Timedelta(interval)).hour.to_numpy()
            position[symbol][part], holding[symbol] = strategy.positions(
                proba[symbol][part], rule, holding[symbol], decision_hours=decided_at
            )
            fold_of[symbol][part] = fold.number
            folds[symbol] += 1
    return {
        symbol: traded_result(
            rows,
            index,
            pool.labels[symbol],
            proba=proba[symbol],
            position=position[symbol],
            fold_of=fold_of[symbol],
            folds=folds[symbol],
            test_end=test_end,
            backtest=backtest,
            interval=interval,
            horizon_hours=horizon,
            primary=rule.primary,
        )  # fmt: skip
        for symbol, (rows, index) in tested.items()
    }


def _union(indexes) -> pd.DatetimeIndex:
    """The sorted hours of several symbols' UTC indexes, each hour once."""
    stamps = np.unique(np.concatenate([np.asarray(index.asi8) for index in indexes]))
    return pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))


def walk_forward_pooled_with_params(
    frames: Mapping[str, pd.DataFrame],
    params: Params,
    candidate: model.Candidate,
    *,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    nthread: int = 0,
) -> dict[str, BacktestResult]:
    """walk_forward_pooled with the features, costs, baselines and seeds that params set."""
    return walk_forward_pooled(
        frames, candidate=candidate, test_start=test_start, test_end=test_end, nthread=nthread,
        **settings_of(params),
    )  # fmt: skip


@dataclass(frozen=True)
class Pool:
    """The symbols a pooled model trains on: each one's feature file and share of the book."""

    paths: dict[str, str]
    weights: dict[str, float]

    @classmethod
    def of(cls, params: Params, features_path: Callable[[str], Path]) -> Pool:
        """The pool of (un-narrowed) params, each symbol's features at features_path(symbol).

        Raises:
            KlinecastError: a symbol's feature file is missing.
        """
        paths = {s: features_path(s) for s in sorted(params.data.symbols)}
        missing = [f"{s} ({p})" for s, p in paths.items() if not Path(p).is_file()]
        if missing:
            raise KlinecastError(
                f"the pooled model needs every symbol's features; missing: {', '.join(missing)}. "
                "Run `dvc repro features` (or the features stage of each symbol) first"
            )
        return cls({s: str(p) for s, p in paths.items()}, Book(params).weights)

    def read(self) -> dict[str, pd.DataFrame]:
        return {symbol: pd.read_parquet(path) for symbol, path in self.paths.items()}

    def record(self) -> dict:
        """Each symbol's features digest and weight (reports/pool.json, the DVC pool stage)."""
        return {
            "symbols": {s: file_digest(Path(p)) for s, p in self.paths.items()},
            "weights": self.weights,
        }

    def digest(self) -> str:
        """One fingerprint of every symbol's features (the pooled study's data version)."""
        lines = "".join(f"{s}:{d}\n" for s, d in self.record()["symbols"].items())
        return hashlib.sha256(lines.encode()).hexdigest()


def book_summary(results: Mapping[str, BacktestResult], weights: Mapping[str, float]) -> dict:
    """A pooled trial's in-sample figures: the symbols' after-cost returns combined at their
    weights (as the book is), the buy-and-hold book beside it, and the deflated Sharpe's
    inputs; trades summed over the symbols."""
    predictions = {s: r.predictions for s, r in results.items()}
    book = portfolio.combine(predictions, dict(weights), ["buy_and_hold"])
    returns = book[portfolio.MODEL].to_numpy()
    before = {
        s: p.assign(strategy_return=p["position"] * p["next_return"])
        for s, p in predictions.items()
    }
    found = portfolio.book_metrics(returns)
    return {
        "pooled": sorted(results),
        "folds": max(r.folds for r in results.values()),
        "hours": found.hours,
        "return_after_fees": found.cumulative_return,
        "return_before_fees": portfolio.book_metrics(
            portfolio.combine(before, dict(weights), [])[portfolio.MODEL].to_numpy()
        ).cumulative_return,
        "sharpe": found.sharpe,
        "trades": sum(r.model.trades for r in results.values()),
        "exposure": float(np.mean([r.model.exposure for r in results.values()])),
        "buy_and_hold_return": portfolio.book_metrics(
            book["buy_and_hold"].to_numpy()
        ).cumulative_return,
        **stats.sharpe_moments(returns).as_dict(),
    }
