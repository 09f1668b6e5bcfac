"""How a trial is scored: tune.objective of one candidate over the purged walk-forward folds of
the in-sample span, after costs; every trial on the same hours."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import portfolio, stats
from klinecast.research.backtest import (
    HOURS_PER_YEAR,
    BacktestResult,
    strategy_returns,
    walk_forward_with_params,
)
from klinecast.research.features import LABEL, NEXT_RETURN
from klinecast.research.model import Candidate
from klinecast.research.pooled import Pool, walk_forward_pooled_with_params

#: How a trial is scored (its hours, its folds, what it earns). Raise it with any change that
#: makes old trials incomparable with new ones: the study name changes, so a re-run starts a
#: fresh study instead of resuming one scored the old way. 2: every trial on the same hours;
#: 3: slippage, the trend baselines, cadence and anchored windows, no pruning.
SCORING_VERSION = 3

#: The declared baseline that the information ratio is measured against.
IR_BASELINE = "buy_and_hold"


def objective_value(
    objective: str, returns: np.ndarray, baseline: np.ndarray | None = None
) -> float:
    """The tuning objective of hourly strategy returns after costs.

    sharpe_after_fees: the annualised Sharpe ratio (0 for a strategy that never trades);
    information_ratio: the annualised mean over the spread of the returns in excess of
    `baseline` (IR_BASELINE's hourly returns after its costs, on the same hours);
    return_after_fees: the cumulative return (rewards exposure in a rising market as much as
    skill: kept for comparison with older studies).
    """
    returns = np.asarray(returns, dtype=float)
    if objective == "return_after_fees":
        return float(np.prod(1.0 + returns)) - 1.0
    if objective == "information_ratio":
        if baseline is None:
            raise ValueError("the information ratio needs the baseline's returns")
        returns = returns - np.asarray(baseline, dtype=float)
    return stats.sharpe(returns) * float(np.sqrt(HOURS_PER_YEAR))


def in_sample_rows(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The feature rows of the in-sample span; tuning sees nothing else.

    The span's last row is kept for its features, but its label and next_return, which come
    from the candle after the span (the first out-of-sample candle), are blanked: that row is
    neither scored nor trained on.
    """
    span = params.split.in_sample
    rows = frame[span.holds(frame.index)].copy()
    after_span = rows.index + params.data.interval_delta >= pd.Timestamp(span.stop)
    rows.loc[after_span, [LABEL, NEXT_RETURN]] = np.nan
    return rows


def data_span(rows: pd.DataFrame, params: Params) -> dict:
    """Where the symbol's in-sample rows start against split.in_sample_start: a symbol listed
    later (or with less history than features.min_history before the span) is tuned and
    trained from its first usable hour, and the reports say so."""
    scored = rows[rows[LABEL].notna()]
    first = scored.index[0] if len(scored) else None
    later = first is not None and first >= params.split.in_sample.start + pd.Timedelta(days=1)
    return {
        "symbol": params.data.symbol,
        "in_sample_start": str(params.split.in_sample_start),
        "first_usable_hour": None if first is None else first.isoformat(),
        "starts_later": bool(later),
    }


def check_in_sample_span(rows: pd.DataFrame, params: Params) -> None:
    """Fails fast when the in-sample data cannot hold the longest look_back plus one step.

    Raises:
        KlinecastError: with the numbers and what to change.
    """
    if rows.empty:
        raise KlinecastError(
            f"no feature rows in the in-sample span {params.split.in_sample}; check "
            "split.in_sample_* against the data"
        )
    first, last = rows.index[0], rows.index[-1]
    problem = look_back_shortfall(
        params,
        days=(last - first).days,
        subject=f"the in-sample data ({first:%Y-%m-%d} .. {last:%Y-%m-%d}) spans",
    )
    if problem:
        raise KlinecastError(problem)


def look_back_shortfall(params: Params, *, days: int, subject: str) -> str | None:
    """Why `days` of in-sample data cannot hold the longest look_back plus one step, or None.

    Args:
        subject: what has those days, the message's start ("the in-sample span ... has").
    """
    longest = params.tune.search_space.look_back_days[1]
    step = params.backtest.step_days
    if longest + step <= days:
        return None
    return (
        f"{subject} {days} days, fewer than look_back_days high ({longest}) + step_days "
        f"({step}); lower tune.search_space.look_back_days or widen split.in_sample_*"
    )


def in_sample_walk_forward(
    rows: pd.DataFrame,
    params: Params,
    candidate: Candidate,
    *,
    nthread: int = 0,
    after_fold: Callable | None = None,
):
    """One trial's walk-forward over in-sample rows.

    Every trial is scored on the same hours: the first fold tests the search space's longest
    look_back_days after the span's first day, whatever this trial's look-back is. So every
    training window lies inside the span, trials compare on equal terms (a short look-back
    would otherwise be scored over months more of the market), and fold k is the same 30 days
    in every trial.
    """
    span = params.split.in_sample
    first_day = max(rows.index[0].floor("D"), pd.Timestamp(span.start))
    longest = max(params.tune.search_space.look_back_days[1], candidate.hp.look_back_days)
    return walk_forward_with_params(
        rows,
        params,
        candidate,
        test_start=first_day + pd.Timedelta(days=longest),
        test_end=pd.Timestamp(span.stop),
        nthread=nthread,
        after_fold=after_fold,
    )


def score(
    rows: pd.DataFrame,
    params: Params,
    candidate: Candidate,
    *,
    nthread: int = 0,
    on_fold: Callable[[int, float], None] | None = None,
) -> tuple[float, BacktestResult]:
    """tune.objective of one candidate over the in-sample walk-forward folds, after costs: the
    score of an Optuna trial, a Katib trial and `klinecast tune-trial` alike. With an inner
    hold-out (tune.holdout_days) the folds stop before it: no trial scores those days.

    Args:
        rows: in_sample_rows of the features.
        on_fold: called after each fold with its number and the objective so far (a Katib
            trial's intermediate metric).

    Returns:
        The objective, and the walk-forward it was computed from.
    """
    name, cost = params.tune.objective, params.backtest.cost

    def after_fold(fold, returns: np.ndarray, market: np.ndarray) -> None:
        if on_fold is not None:
            held = strategy_returns(np.ones(len(market)), market, cost=cost)
            on_fold(fold.number, objective_value(name, returns, held))

    # the search's span: the in-sample span less the inner hold-out, its last row blanked
    searched = search_params(params)
    if searched is not params:
        rows = in_sample_rows(rows, searched)
    result = in_sample_walk_forward(
        rows, searched, candidate, nthread=nthread, after_fold=after_fold
    )
    predictions = result.predictions
    value = objective_value(
        name,
        predictions["strategy_return"].to_numpy(),
        predictions[f"{IR_BASELINE}_return"].to_numpy(),
    )
    return value, result


def score_pooled(
    frames: dict[str, pd.DataFrame],
    params: Params,
    candidate: Candidate,
    *,
    weights: dict[str, float],
    nthread: int = 0,
) -> tuple[float, dict[str, BacktestResult]]:
    """tune.objective of one candidate's pooled model over the in-sample folds: of the book,
    the symbols' after-cost returns combined at their weights (its information ratio against
    the buy-and-hold book). Every trial is scored on the same hours, as in `score`.

    Args:
        frames: symbol -> in_sample_rows of its features.
    """
    params = search_params(params)  # the in-sample span less the inner hold-out
    frames = {s: in_sample_rows(rows, params) for s, rows in frames.items()}
    span = params.split.in_sample
    first = min(rows.index[0] for rows in frames.values() if len(rows))
    first_day = max(first.floor("D"), pd.Timestamp(span.start))
    longest = max(params.tune.search_space.look_back_days[1], candidate.hp.look_back_days)
    results = walk_forward_pooled_with_params(
        frames, params, candidate,
        test_start=first_day + pd.Timedelta(days=longest), test_end=pd.Timestamp(span.stop),
        nthread=nthread,
    )  # fmt: skip
    book = portfolio.combine(
        {s: r.predictions for s, r in results.items()}, weights, [IR_BASELINE]
    )
    value = objective_value(
        params.tune.objective, book[portfolio.MODEL].to_numpy(), book[IR_BASELINE].to_numpy()
    )
    return value, results


def in_sample_summary(result: BacktestResult) -> dict:
    """What a trial keeps of its walk-forward (user attrs; the report's in-sample column and the
    deflated Sharpe's inputs)."""
    returns = result.predictions["strategy_return"].to_numpy()
    m = result.model
    return {
        "folds": result.folds,
        "hours": m.hours,
        "return_after_fees": m.cumulative_return,
        "return_before_fees": m.return_before_fees,
        "accuracy": m.accuracy,
        "classifier_accuracy": m.classifier_accuracy,
        "sharpe": m.sharpe,
        "trades": m.trades,
        "exposure": m.exposure,
        "buy_and_hold_return": result.baselines[IR_BASELINE].cumulative_return,
        **stats.sharpe_moments(returns).as_dict(),  # the deflated Sharpe's inputs
    }


def pooled_in_sample(pool: Pool, params: Params) -> dict[str, pd.DataFrame]:
    """Each pooled symbol's in-sample rows, every symbol of the pool as evaluate and train pool
    them: a symbol listed after the span has none, so it trains nothing and its share of the
    book is flat in sample, as it is out of sample before its first row."""
    return {s: in_sample_rows(frame, params) for s, frame in pool.read().items()}


def search_params(params: Params) -> Params:
    """params with the in-sample span cut before the inner hold-out (tune.holdout_days): the
    span the search scores. Without a hold-out, params."""
    days = params.tune.holdout_days
    if days == 0:
        return params
    split = params.split
    end = split.in_sample_end - dt.timedelta(days=days)
    return dataclasses.replace(params, split=dataclasses.replace(split, in_sample_end=end))


def holdout_span(params: Params) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[first, stop) of the inner hold-out: the in-sample span's last tune.holdout_days."""
    stop = pd.Timestamp(params.split.in_sample.stop)
    return stop - pd.Timedelta(days=params.tune.holdout_days), stop


def score_holdout(
    rows: pd.DataFrame, params: Params, candidate: Candidate, *, nthread: int = 0
) -> tuple[float, BacktestResult]:
    """tune.objective of one candidate walked forward over the inner hold-out (which the
    search never scored), retrained every step as everywhere; its training windows reach back
    into the search's span, never into the hold-out.

    Args:
        rows: in_sample_rows of the features (the whole in-sample span).
    """
    start, stop = holdout_span(params)
    result = walk_forward_with_params(
        rows, params, candidate, test_start=start, test_end=stop, nthread=nthread
    )
    predictions = result.predictions
    value = objective_value(
        params.tune.objective,
        predictions["strategy_return"].to_numpy(),
        predictions[f"{IR_BASELINE}_return"].to_numpy(),
    )
    return value, result
