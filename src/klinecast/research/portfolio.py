"""The book: the symbols' out-of-sample returns after costs, combined at their capital shares,
against the baselines combined the same way.

Each symbol keeps its own model, rule and costs (its evaluate stage); the book splits its
capital at the start as portfolio.weights says and never rebalances: each symbol's sleeve
compounds on its own, so the book's equity is the weighted sum of the sleeves' equities and its
hourly return weighs each symbol by its sleeve's share of the book at the hour's start. (A book
rebalanced to the weights every hour would trade between the sleeves each hour, at a cost the
symbols' returns do not carry.) An hour a symbol has no row (before its listing, or an exchange
outage) counts as flat for it: its sleeve earns nothing. The baselines combine the same way,
and the book is tested against each with the same bootstrap as one symbol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from klinecast.research import stats
from klinecast.research.scorecard import BaselineTest
from klinecast.research.stats import HOURS_PER_YEAR

MODEL = "model"


@dataclass(frozen=True)
class BookMetrics:
    """How a combined series of hourly returns did."""

    cumulative_return: float
    sharpe: float  # annualised
    max_drawdown: float
    hours: int

    def as_dict(self) -> dict:
        return asdict(self)


def combine(
    predictions: dict[str, pd.DataFrame], weights: dict[str, float], baselines: list[str]
) -> pd.DataFrame:
    """The book's hourly returns: a column for the model and one per baseline.

    Args:
        predictions: symbol -> evaluate's per-hour predictions (strategy_return and
            <baseline>_return columns).
        weights: symbol -> share of capital (summing to 1).
        baselines: which baselines to combine (each symbol must have all of them).
    """
    columns = {MODEL: "strategy_return"} | {name: f"{name}_return" for name in baselines}
    hours = pd.DatetimeIndex(sorted(set().union(*(p.index for p in predictions.values()))))
    shares = np.array([weights[symbol] for symbol in predictions], dtype=float)
    book = pd.DataFrame(
        {
            column: drifting_book(
                np.column_stack(
                    [frame[source].reindex(hours).fillna(0.0) for frame in predictions.values()]
                ),
                shares,
            )
            for column, source in columns.items()
        },
        index=hours,
    )
    book.index.name = "open_time"
    return book


def drifting_book(returns: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """A book's hourly returns from its sleeves' (hours x sleeves), capital split by shares at
    the start and never rebalanced: each hour weighs a sleeve by its value at the hour's start
    over the book's. (A book of one returns its sleeve's returns exactly: its weight is 1.)"""
    growth = np.cumprod(1.0 + returns, axis=0)
    values = shares * np.vstack([np.ones((1, returns.shape[1])), growth])[: len(returns)]
    total = values.sum(axis=1, keepdims=True)
    weights = np.divide(values, total, out=np.zeros_like(values), where=total > 0)
    return (weights * returns).sum(axis=1)


def book_metrics(returns: np.ndarray) -> BookMetrics:
    returns = np.asarray(returns, dtype=float)
    equity = np.cumprod(1.0 + returns)
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return BookMetrics(
        cumulative_return=float(equity[-1] - 1.0) if len(returns) else 0.0,
        sharpe=stats.sharpe(returns) * float(np.sqrt(HOURS_PER_YEAR)),
        max_drawdown=float(np.min(equity / peaks - 1.0)) if len(returns) else 0.0,
        hours=len(returns),
    )


def tests_against_baselines(
    book: pd.DataFrame, declared: list[str], *, reps: int, seed: int
) -> dict[str, BaselineTest]:
    """The book's model against each declared baseline: excess return and the one-sided SPA
    bootstrap p-value, as `evaluation.scorecard` tests one symbol."""
    returns = book[MODEL].to_numpy()
    model = book_metrics(returns)
    found = {}
    for name in declared:
        benchmark = book[name].to_numpy()
        p_value = stats.bootstrap_p_value(returns, benchmark, reps=reps, seed=seed)
        found[name] = BaselineTest(
            excess_return=model.cumulative_return - book_metrics(benchmark).cumulative_return,
            p_value=p_value,
            mc_error=stats.monte_carlo_error(p_value, reps=reps),
            psr=stats.probabilistic_sharpe(returns - benchmark),
        )
    return found


def daily_equity(book: pd.DataFrame) -> pd.DataFrame:
    """Equity (1 = start) of the book's model and baselines at each day's last hour (dvc plots)."""
    daily = (1.0 + book).cumprod().resample("1D").last()
    daily.index = daily.index.strftime("%Y-%m-%d")
    daily.index.name = "day"
    return daily
