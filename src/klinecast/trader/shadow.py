"""The shadow book: each hour the trader asks the challenger too (trade.challenger_url), and
books the position the challenger's rule would hold on paper, never at the exchange. Once the
next candle has closed, that position's return after the same costs as the traded book's is
settled, so the shadow book and the traded one are measured alike over the same hours
(`compare`), and a replay's shadow book equals an offline backtest of the challenger.

A symbol's calls of one version are one shadow book: a newer challenger starts its own, flat.
The challenger never holds up the traded hour: when it does not answer, the hour is a no-call
that holds the shadow position on, and the traded book goes ahead as if it were not there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import strategy
from klinecast.research.backtest import position_return
from klinecast.trader.ledger import Ledger

log = logging.getLogger("klinecast.trader")


def call(ledger: Ledger, ask, params: Params, *, hour: pd.Timestamp, candles: pd.DataFrame) -> None:
    """Asks the challenger about the hour (ask: candles -> Prediction) and books its call: the
    position its rule would hold after the hour, from its own shadow book's holding. An hour
    called already is left as it is.

    Raises:
        LedgerError: the database is unavailable.
    """
    symbol, at = params.data.symbol, hour.to_pydatetime()
    calls = ledger.shadow_calls(symbol)
    if calls and calls[-1]["hour"] >= at:
        return
    try:
        prediction = ask(candles)
    except KlinecastError as exc:
        # a warning while a shadow book is in progress; before one (no challenger in shadow:
        # the service answers 404 every hour) only a note
        level = logging.WARNING if calls else logging.INFO
        log.log(level, "%s: hour %s: the challenger did not answer: %s", symbol, hour, exc)
        if calls:  # a shadow book in progress holds its position through the hour
            last = calls[-1]
            ledger.record_shadow_call({
                "hour": at, "symbol": symbol, "version": last["version"], "prob_up": None,
                "target": last["target"], "status": "no_call", "reason": str(exc),
            })  # fmt: skip
        return
    version = prediction.model_version
    held = strategy.holding_from_positions([c["target"] for c in calls if c["version"] == version])
    decided_at = hour + params.data.interval_delta
    target = strategy.next_position(
        prediction.prob_up, prediction.rule, held, decision_hour=decided_at.hour
    )
    ledger.record_shadow_call({
        "hour": at, "symbol": symbol, "version": version, "prob_up": prediction.prob_up,
        "target": target, "status": "called", "reason": None,
    })  # fmt: skip


def settle(ledger: Ledger, candles: pd.DataFrame, params: Params) -> None:
    """The shadow calls whose next candle has closed: what each position earned after costs
    (params.backtest.cost on every change of position, as the traded book pays), and the
    equity of its version's shadow book."""
    symbol, cost = params.data.symbol, params.backtest.cost
    closes = candles["close"]
    settled = {row["hour"]: row for row in ledger.shadow_outcomes(symbol)}
    equity: dict[str, float] = {}
    previous: dict[str, int] = {}  # each version's position before the hour
    for row in ledger.shadow_calls(symbol, before=candles.index[-1].to_pydatetime()):
        version, target, hour = row["version"], int(row["target"]), pd.Timestamp(row["hour"])
        done = settled.get(row["hour"])
        if done is not None:
            equity[version] = done["equity"]
        else:
            following = hour + params.data.interval_delta
            if hour in closes.index and following in closes.index:
                market = float(closes[following] / closes[hour] - 1.0)
                earned = float(position_return(target, previous.get(version, 0), market, cost=cost))
                equity[version] = equity.get(version, 1.0) * (1.0 + earned)
                called = target != 0 and row["status"] == "called"
                ledger.record_shadow_outcome({
                    "hour": row["hour"], "symbol": symbol, "version": version, "target": target,
                    "correct": (market > 0) == (target > 0) if called else None,
                    "strategy_return": earned, "market_return": market,
                    "equity": equity[version],
                })  # fmt: skip
        previous[version] = target


@dataclass(frozen=True)
class BookFigures:
    """One book over the compared hours."""

    total_return: float  # after costs
    hit_rate: float  # of the hours a side was called (NaN: none)
    changes: int  # how often the position changed
    max_drawdown: float  # the deepest fall of its equity from a peak (<= 0)

    @classmethod
    def of(cls, returns: np.ndarray, targets: np.ndarray, correct: list) -> BookFigures:
        curve = np.cumprod(1.0 + returns)
        peaks = np.maximum.accumulate(np.r_[1.0, curve])[1:]
        called = [bool(c) for c in correct if pd.notna(c)]
        return cls(
            total_return=float(curve[-1] - 1.0) if len(curve) else 0.0,
            hit_rate=float(np.mean(called)) if called else float("nan"),
            changes=int(np.count_nonzero(np.diff(targets))) if len(targets) > 1 else 0,
            max_drawdown=float(np.min(curve / peaks - 1.0)) if len(curve) else 0.0,
        )


@dataclass(frozen=True)
class SideBySide:
    """The challenger's shadow book and the traded champion over the hours both settled."""

    symbol: str
    version: str  # the challenger's
    hours: pd.DatetimeIndex
    champion: BookFigures
    challenger: BookFigures
    #: each UTC day's return of the challenger less the champion's, over those hours
    daily_difference: pd.Series
    #: the two books' equity over the hours (columns champion, challenger), from 1
    curves: pd.DataFrame


def compare(ledger: Ledger, symbol: str, version: str | None = None) -> SideBySide | None:
    """The challenger's shadow book (its newest version, unless given) beside the champion's
    traded book over the hours both settled; None before any such hour.

    Raises:
        LedgerError: the database is unavailable.
    """
    shadow = pd.DataFrame(ledger.shadow_outcomes(symbol))
    if shadow.empty:
        return None
    version = version or shadow["version"].iloc[-1]
    shadow = shadow[shadow["version"] == version].set_index("hour")
    traded = pd.DataFrame(ledger.outcomes(symbol))
    if traded.empty:
        return None
    traded = traded.set_index("hour")
    hours = shadow.index.intersection(traded.index).sort_values()
    if hours.empty:
        return None
    shadow, traded = shadow.loc[hours], traded.loc[hours]
    returns = pd.DataFrame(
        {"champion": traded["strategy_return"], "challenger": shadow["strategy_return"]}
    ).astype(float)
    returns.index = pd.DatetimeIndex(pd.to_datetime(hours, utc=True))
    days = (1.0 + returns).groupby(returns.index.floor("D")).prod() - 1.0
    figures = {
        name: BookFigures.of(
            returns[name].to_numpy(), frame["target"].to_numpy(), list(frame["correct"])
        )
        for name, frame in (("champion", traded), ("challenger", shadow))
    }
    return SideBySide(
        symbol, version, returns.index, figures["champion"], figures["challenger"],
        days["challenger"] - days["champion"], (1.0 + returns).cumprod(),
    )  # fmt: skip
