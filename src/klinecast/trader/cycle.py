"""One hourly cycle: closed candles -> InferenceService -> target position -> orders -> ledger.

Order of effects, so that a crash anywhere loses nothing and repeats nothing:
the ledger is reached first (down: nothing is sent); the hour's intent is committed before
its order is sent; a rerun asks the exchange for the intent's client order id before sending;
a fill and the new position are committed together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.config import Params
from klinecast.research import strategy
from klinecast.research.backtest import position_return
from klinecast.serving.client import InferenceError, Prediction
from klinecast.trader.brokers import Broker, client_order_id
from klinecast.trader.ledger import Ledger, Order

log = logging.getLogger("klinecast.trader")
HALTED = "halted"


@dataclass(frozen=True)
class CycleResult:
    hour: pd.Timestamp
    status: str  # traded | already_traded | no_trade | halted
    target: int | None = None
    prob_up: float | None = None
    orders_sent: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "no_trade"


@dataclass
class Trader:
    params: Params
    ledger: Ledger
    broker: Broker
    #: (until, count) -> the count closed candles ending at until
    market: Callable[[pd.Timestamp, int], pd.DataFrame]
    #: candles -> Prediction (raises InferenceError)
    predict: Callable[[pd.DataFrame], Prediction]


def run_once(trader: Trader, *, hour: pd.Timestamp) -> CycleResult:
    """Trades the hour whose candle opened at `hour` and has closed.

    Raises:
        LedgerError: the database is unavailable (before anything is sent).
        ExchangeError: the exchange failed after the retries.
    """
    ledger, params = trader.ledger, trader.params
    ledger.migrate()
    done = ledger.prediction(hour.to_pydatetime())
    if done is not None and done["status"] in ("traded", HALTED):
        return CycleResult(hour, "already_traded", done["target"], done["prob_up"])
    candles = trader.market(hour, params.features.min_history)
    settle(ledger, candles, params)
    close = float(candles["close"].iloc[-1])
    halted = ledger.get_state(HALTED)
    if halted is not None:
        sent = trade_to(trader, hour, target=0, price=close)
        reason = f"kill switch: {halted}; `klinecast trade resume` re-enables"
        ledger.record_prediction(
            hour.to_pydatetime(), symbol=params.data.symbol, target=0, close=close,
            status=HALTED, reason=reason,
        )  # fmt: skip
        return CycleResult(hour, HALTED, 0, orders_sent=sent, reason=reason)
    try:
        prediction = trader.predict(candles)
    except InferenceError as exc:
        log.error("hour %s: no trade: %s", hour, exc)
        ledger.record_prediction(
            hour.to_pydatetime(), symbol=params.data.symbol, close=close,
            status="no_trade", reason=str(exc),
        )  # fmt: skip
        return CycleResult(hour, "no_trade", reason=str(exc))
    target = strategy.next_position(
        prediction.prob_up, prediction.rule, holding(ledger, params.data.symbol, hour)
    )
    sent = trade_to(trader, hour, target=target, price=close)
    ledger.record_prediction(
        hour.to_pydatetime(), symbol=params.data.symbol, prob_up=prediction.prob_up,
        target=target, model_version=prediction.model_version,
        feature_time=prediction.feature_time, close=close, status="traded",
    )  # fmt: skip
    return CycleResult(hour, "traded", target, prediction.prob_up, sent)


def holding(ledger: Ledger, symbol: str, hour: pd.Timestamp) -> strategy.Holding:
    """The book before this hour's decision: the ledger's position, and for how many traded
    hours in a row it has been held (the rule's minimum hold counts them)."""
    side = int(np.sign(ledger.position(symbol)))
    if side == 0:
        return strategy.FLAT
    targets = [int(r["target"]) for r in ledger.traded_predictions(before=hour.to_pydatetime())]
    held = strategy.holding_from_positions(targets)
    return held if held.position == side else strategy.Holding(side, 1)


def trade_to(trader: Trader, hour: pd.Timestamp, *, target: int, price: float) -> int:
    """Moves the position to target * quantity (capped); returns the orders sent."""
    symbol, trade = trader.params.data.symbol, trader.params.trade
    size = min(trade.quantity, trade.max_quantity)
    current = trader.ledger.position(symbol)
    sent = 0
    for leg, delta in legs(current, target * size):
        order = Order(
            client_order_id=client_order_id(symbol, hour, leg),
            hour=hour.to_pydatetime(),
            leg=leg,
            symbol=symbol,
            side="BUY" if delta > 0 else "SELL",
            qty=round(abs(delta), 8),
        )
        known = trader.ledger.order(order.client_order_id)
        if known is not None and known.status == "filled":
            current += delta
            continue
        if known is None:
            trader.ledger.record_intent(order)  # committed before the order leaves
        filled = trader.broker.find(order)  # a crash after sending: the exchange knows
        if filled is None:
            filled = trader.broker.place(order, price=price)
            sent += 1
        else:
            log.warning(
                "%s was already on the exchange: recorded, not sent again", order.client_order_id
            )
        current += delta
        trader.ledger.record_fill(filled, position_after=round(current, 8))
    return sent


def legs(current: float, target: float) -> list[tuple[str, float]]:
    """close (to flat) and/or open (from flat) legs: a flip is both."""
    if np.isclose(current, target):
        return []
    steps = []
    if current != 0 and (target == 0 or np.sign(target) != np.sign(current)):
        steps.append(("close", -current))
        current = 0.0
    if target != 0:
        steps.append(("open", target - current))
    return steps


def settle(ledger: Ledger, candles: pd.DataFrame, params: Params) -> None:
    """Outcomes and equity for traded hours whose next candle has closed, then the kill switch."""
    fee = params.backtest.fee
    closes = candles["close"]
    settled = ledger.outcome_hours()
    previous_target = 0
    for row in ledger.traded_predictions(before=candles.index[-1].to_pydatetime()):
        hour = pd.Timestamp(row["hour"])
        target = int(row["target"])
        if hour not in settled:
            following = hour + pd.Timedelta(params.data.interval_delta)
            if hour not in closes.index or following not in closes.index:
                previous_target = target
                continue
            market = float(closes[following] / closes[hour] - 1.0)
            strategy = position_return(target, previous_target, market, fee=fee)
            equity, hold = ledger.last_equity()
            ledger.record_outcome(
                {
                    "hour": hour.to_pydatetime(), "close": float(closes[hour]),
                    "next_close": float(closes[following]), "actual_up": market > 0,
                    "target": target, "correct": None if target == 0 else (market > 0) == (target > 0),
                    "strategy_return": strategy, "market_return": market,
                },
                equity_row={
                    "hour": hour.to_pydatetime(), "equity": equity * (1 + strategy),
                    "buy_and_hold": hold * (1 + market),
                },
            )  # fmt: skip
        previous_target = target
    equity, _ = ledger.last_equity()
    if equity - 1.0 < params.trade.kill_switch_return and ledger.get_state(HALTED) is None:
        reason = f"cumulative return {equity - 1.0:+.2%} fell below {params.trade.kill_switch_return:+.2%}"
        log.error("kill switch: %s; trading halts", reason)
        ledger.set_state(HALTED, reason)
