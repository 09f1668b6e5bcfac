"""The baselines a model is held against, each a rule over the same hours as the model.

- `buy_and_hold`, `always_short`: always in the market, long or short;
- `momentum`: the sign of the candle that just closed (a naive hourly rule);
- `coin_flip`: long or short at random (seeded);
- `trend_<N>d`: long when the close is above its N-day simple moving average, flat otherwise,
  decided once a day at 00:00 UTC (the classic time-series momentum rule: a few trades a year);
- `vol_target`: buy-and-hold with exposure scaled to a target annual volatility (the realised
  volatility of the last days), capped at 1, decided once a day.

Every rule at a row uses only candles closed by that row's decision time (its candle's close),
so a baseline has no look-ahead either. A trend rule needs its N days of history: the caller
passes the rows before the test span too, and the rule is flat until it has them.

- `primary_<feature>`: a meta-labelled model's primary rule itself (`trend_50d`: the trend
  rule as the feature computes it), so the gate asks whether the model improves on the rule
  whose bets it takes or skips.

A gate holds a model to the baselines its side could hold (`declared`): a long-only rule is
held to buy-and-hold, the trend rules and the volatility-targeted one; a long-short rule to the
short one too; a model with a primary to that primary too.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from klinecast.config import NO_PRIMARY, BacktestParams
from klinecast.research.features import CLOSE, NEXT_RETURN
from klinecast.research.stats import HOURS_PER_YEAR

NAIVE = ("buy_and_hold", "always_short", "momentum", "coin_flip")
VOL_TARGET = "vol_target"


def names(params: BacktestParams) -> tuple[str, ...]:
    """Every baseline of params, in the order tables show them."""
    return (*NAIVE, *(trend_name(n) for n in params.trend_days), VOL_TARGET)


def trend_name(days: int) -> str:
    return f"trend_{days}d"


def primary_name(primary: str) -> str:
    """The baseline that holds a primary rule's own positions."""
    return f"primary_{primary}"


def declared(side: str, params: BacktestParams, *, primary: str = NO_PRIMARY) -> tuple[str, ...]:
    """The baselines a rule of that side (and primary) must beat: those it could hold itself."""
    long_only = ("buy_and_hold", *(trend_name(n) for n in params.trend_days), VOL_TARGET)
    if primary != NO_PRIMARY:
        long_only = (*long_only, primary_name(primary))
    return long_only if side == "long_only" else (*long_only, "always_short")


def positions(
    rows: pd.DataFrame,
    index: pd.DatetimeIndex,
    *,
    params: BacktestParams,
    interval: dt.timedelta,
    primary: str = NO_PRIMARY,
) -> dict[str, np.ndarray]:
    """Each baseline's position at every hour of `index`.

    Args:
        rows: scored feature rows with `close` and `next_return`, from well before index (the
            history the trend rules and the volatility need) through its last hour.
        index: the hours to trade, a subset of rows.index.
        primary: a meta-labelled model's primary, a feature of rows: its rule is held too.
    """
    n = len(index)
    at = rows.index.get_indexer(index)
    if (at < 0).any():
        raise ValueError("every hour to trade must be one of the rows")
    close = rows[CLOSE]
    next_returns = rows[NEXT_RETURN].to_numpy(dtype=float)[at]
    step = pd.Timedelta(interval).value
    last_return = np.full(n, np.nan)
    last_return[1:] = next_returns[:-1]
    last_return[~_adjacent(index, step)] = np.nan
    rng = np.random.default_rng(params.coin_flip_seed)
    found = {
        "buy_and_hold": np.ones(n),
        "always_short": -np.ones(n),
        "momentum": np.nan_to_num(np.sign(last_return)),
        "coin_flip": rng.choice(np.array([-1.0, 1.0]), size=n),
    }
    decided = _daily_decisions(rows.index, interval)
    for days in params.trend_days:
        average = close.rolling(f"{days}D", min_periods=_enough(days, interval)).mean()
        signal = (close > average).astype(float).where(average.notna(), 0.0)
        found[trend_name(days)] = _held_daily(signal, decided)[at]
    log_returns = np.log(close).diff().where(_adjacent(rows.index, step))
    volatility = log_returns.rolling(
        f"{params.vol_lookback_days}D", min_periods=_enough(params.vol_lookback_days, interval)
    ).std() * np.sqrt(HOURS_PER_YEAR * pd.Timedelta(hours=1) / pd.Timedelta(interval))
    exposure = (params.vol_target / volatility).clip(upper=1.0).where(volatility > 0, 0.0)
    found[VOL_TARGET] = _held_daily(exposure.fillna(0.0), decided)[at]
    if primary != NO_PRIMARY:
        found[primary_name(primary)] = np.nan_to_num(rows[primary].to_numpy(dtype=float)[at])
    return found


def _enough(days: int, interval: dt.timedelta) -> int:
    """Candles a day-window must hold before its value counts: nine tenths of them (an
    exchange outage of a few hours does not blank a 200-day average)."""
    return max(2, int(0.9 * days * pd.Timedelta(days=1) / pd.Timedelta(interval)))


def _adjacent(index: pd.DatetimeIndex, step: int) -> np.ndarray:
    """Rows whose previous row is the candle just before them (no gap between)."""
    adjacent = np.zeros(len(index), dtype=bool)
    adjacent[1:] = np.diff(index.asi8) == step
    return adjacent


def _daily_decisions(index: pd.DatetimeIndex, interval: dt.timedelta) -> np.ndarray:
    """Rows whose candle closes at 00:00 UTC: the once-a-day decision times."""
    decision_time = index + pd.Timedelta(interval)
    return (decision_time.hour == 0) & (decision_time.minute == 0)


def _held_daily(value: pd.Series, decided: np.ndarray) -> np.ndarray:
    """value taken at each daily decision row and held until the next one (0 before the
    first)."""
    held = value.where(decided).ffill().fillna(0.0)
    return held.to_numpy(dtype=float)
