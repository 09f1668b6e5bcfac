"""One hourly cycle: reconcile with the exchange, then closed candles -> InferenceService ->
target position -> orders -> ledger.

What the cycle guarantees, and how:

- **One cycle per symbol at a time.** The cycle holds a lock in the ledger's database (a
  PostgreSQL advisory lock, or an flock beside a SQLite file) from reconciling to recording;
  a second run waits for it (trade.lock_wait_seconds), then finds the hour done; if the first
  does not finish in that time, the second sends nothing and says so (status `busy`).
- **The exchange is the source of truth, and the cycle reconciles before it acts.** Every
  unresolved intent of any hour is looked up by its client order id and recorded as filled,
  rejected or absent; then the ledger's position is compared with what the exchange holds (the
  testnet's balance of the base asset against its baseline, or the paper broker's own book).
  A difference beyond trade.reconcile_tolerance halts the symbol: nothing is sent until an
  operator resolves it (`klinecast trade resolve`).
- **An order is never resent blindly.** Its intent is committed before it leaves; a POST that
  failed after it may have reached the exchange is followed by a lookup, and the order is sent
  again only when the exchange says it has none (at most MAX_SENDS times).
- **The cap holds at the exchange**: the position checked against trade.max_quantity is the
  reconciled one.
- **Failures are on record**: a refused or doubtful order keeps Binance's code, message and
  whether it may exist; a halt keeps its reason, and its resume who decided what and when.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.book import Book
from klinecast.config import Params
from klinecast.data.market import ExchangeError, OrderInDoubt, OrderRejected
from klinecast.indicators import fetch_hours
from klinecast.research import strategy
from klinecast.research.backtest import position_return
from klinecast.serving.client import InferenceError, Prediction
from klinecast.trader.brokers import Broker, client_order_id
from klinecast.trader.ledger import BOOK, Ledger, Order
from klinecast.trader.locks import LockBusy

log = logging.getLogger("klinecast.trader")
#: How often one order may be sent in a cycle: each resend follows a lookup that found none.
MAX_SENDS = 3
KILL_SWITCH, RECONCILE = "kill_switch", "reconcile"
#: The exit codes of `klinecast trade once` by status (what a CronJob's failure shows).
EXIT_CODES = {"traded": 0, "already_traded": 0, "no_trade": 1, "halted": 3, "busy": 4}


@dataclass(frozen=True)
class CycleResult:
    hour: pd.Timestamp
    status: str  # traded | already_traded | no_trade | halted | busy
    target: int | None = None
    prob_up: float | None = None
    orders_sent: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


@dataclass
class Trader:
    params: Params
    ledger: Ledger
    broker: Broker
    #: (until, count) -> the count closed candles ending at until
    market: Callable[[pd.Timestamp, int], pd.DataFrame]
    #: candles -> Prediction (raises InferenceError)
    predict: Callable[[pd.DataFrame], Prediction]

    @property
    def symbol(self) -> str:
        return self.params.data.symbol


def run_once(trader: Trader, *, hour: pd.Timestamp) -> CycleResult:
    """Trades the hour whose candle opened at `hour` and has closed.

    Raises:
        LedgerError: the database is unavailable (before anything is sent).
        ExchangeError: the exchange failed after the retries, or refused an order.
    """
    ledger, trade = trader.ledger, trader.params.trade
    ledger.migrate()
    try:
        with ledger.exclusive(f"klinecast-cycle:{trader.symbol}", wait_s=trade.lock_wait_seconds):
            return _locked_cycle(trader, hour)
    except LockBusy as exc:
        reason = f"another cycle of {trader.symbol} is running: {exc}; nothing was sent"
        log.error("hour %s: %s", hour, reason)
        return CycleResult(hour, "busy", reason=reason)


def _locked_cycle(trader: Trader, hour: pd.Timestamp) -> CycleResult:
    ledger, params, symbol = trader.ledger, trader.params, trader.symbol
    reconcile_orders(trader)
    difference = reconcile_position(trader, hour)
    done = ledger.prediction(hour.to_pydatetime(), symbol)
    if done is not None and done["status"] in ("traded", "halted") and difference is None:
        return CycleResult(hour, "already_traded", done["target"], done["prob_up"])
    candles = trader.market(hour, fetch_hours(params.features.min_history))
    settle(ledger, candles, params)
    close = float(candles["close"].iloc[-1])
    halt = ledger.open_halt(symbol)
    if halt is not None:
        sent = 0
        if halt.kind == KILL_SWITCH:  # flat while halted; a reconcile halt sends nothing
            sent = trade_to(trader, hour, target=0, price=close)
        how = "trade resume" if halt.kind == KILL_SWITCH else "trade resolve"
        reason = f"halted ({halt.kind}): {halt.reason}; `klinecast {how}` decides what next"
        ledger.record_prediction(
            hour.to_pydatetime(), symbol=symbol, target=0 if sent or halt.kind == KILL_SWITCH
            else None, close=close, status="halted", reason=reason,
        )  # fmt: skip
        return CycleResult(hour, "halted", 0, orders_sent=sent, reason=reason)
    try:
        prediction = trader.predict(candles)
    except InferenceError as exc:
        log.error("hour %s: no trade: %s", hour, exc)
        ledger.record_prediction(
            hour.to_pydatetime(), symbol=symbol, close=close, status="no_trade", reason=str(exc),
        )  # fmt: skip
        return CycleResult(hour, "no_trade", reason=str(exc))
    decided_at = hour + params.data.interval_delta  # when the hour's candle closed
    target = strategy.next_position(
        prediction.prob_up, prediction.rule, holding(ledger, symbol, hour),
        decision_hour=decided_at.hour,
    )  # fmt: skip
    sent = trade_to(trader, hour, target=target, price=close)
    ledger.record_prediction(
        hour.to_pydatetime(), symbol=symbol, prob_up=prediction.prob_up, target=target,
        model_version=prediction.model_version, feature_time=prediction.feature_time,
        close=close, status="traded",
    )  # fmt: skip
    return CycleResult(hour, "traded", target, prediction.prob_up, sent)


def reconcile_orders(trader: Trader) -> None:
    """Every unresolved intent of the symbol, of any hour, looked up at the exchange by its
    client order id and recorded as filled (the position follows), rejected or absent."""
    ledger = trader.ledger
    for order in ledger.unresolved_orders():
        if order.symbol != trader.symbol:
            continue  # another symbol's: its own cycle, under its own lock, looks it up
        found = trader.broker.lookup(order)
        if found is None:
            ledger.record_failure(
                order, status="absent", code=None, may_exist=False,
                message="the exchange has no such order (looked up while reconciling)",
            )  # fmt: skip
            log.warning("%s: the exchange has no such order: recorded absent", order.client_order_id)
        elif found.status == "filled":
            position = round(ledger.position(order.symbol) + found.holding_change, 8)
            ledger.record_fill(found, position_after=position)
            log.warning("%s was filled at the exchange: recorded now", order.client_order_id)
        elif found.status == "rejected":
            ledger.record_failure(
                order, status="rejected", code=None, may_exist=False,
                message=found.error_message or "the exchange did not fill it",
            )  # fmt: skip


def reconcile_position(trader: Trader, hour: pd.Timestamp) -> float | None:
    """The ledger's position against the exchange's: recorded every cycle; a difference
    beyond the tolerance halts the symbol. Returns the difference when it halts, else None.

    The exchange's position is its holding of the base asset less a baseline: the holding
    when the ledger first met the exchange with no order on record (an account holds coins of
    its own), moved only by `klinecast trade resolve`.
    """
    ledger, symbol = trader.ledger, trader.symbol
    holding = trader.broker.holding(symbol)
    key = f"baseline:{symbol}"
    baseline = ledger.get_state(key)
    if baseline is None:
        if ledger.orders():
            baseline = holding - ledger.position(symbol)  # a ledger that predates baselines
        else:
            baseline = holding
        ledger.set_state(key, repr(float(baseline)))
    exchange = holding - float(baseline)
    ours = ledger.position(symbol)
    difference = exchange - ours
    tolerance = trader.params.trade.reconcile_tolerance
    agree = abs(difference) <= tolerance
    ledger.record_reconciliation(
        hour=hour.to_pydatetime(), symbol=symbol, ledger_position=ours, exchange_position=exchange,
        difference=difference, tolerance=tolerance, agree=agree,
    )  # fmt: skip
    if agree:
        return None
    if ledger.own_halt(symbol) is None:
        reason = (
            f"the ledger holds {ours:+.8f} {symbol} but the exchange {exchange:+.8f} (difference "
            f"{difference:+.8f}, tolerance {tolerance})"
        )
        log.error("reconcile: %s; %s halts until `klinecast trade resolve`", reason, symbol)
        ledger.halt(symbol, kind=RECONCILE, reason=reason)
    return difference


def holding(ledger: Ledger, symbol: str, hour: pd.Timestamp) -> strategy.Holding:
    """The book before this hour's decision: the ledger's position, and for how many traded
    hours in a row it has been held (the rule's minimum hold counts them)."""
    side = int(np.sign(ledger.position(symbol)))
    if side == 0:
        return strategy.FLAT
    traded = ledger.traded_predictions(symbol, before=hour.to_pydatetime())
    targets = [int(r["target"]) for r in traded]
    held = strategy.holding_from_positions(targets)
    return held if held.position == side else strategy.Holding(side, 1)


def trade_to(trader: Trader, hour: pd.Timestamp, *, target: int, price: float) -> int:
    """Moves the position to target * size (`position_size`, at most trade.max_quantity); a
    position sized by capital is held at its size while the side stays. Returns the
    orders sent. It moves from the reconciled position, the exchange's, so the cap holds at
    the exchange.

    Raises:
        ExchangeError: an order was refused (on record), or its fate stayed unknown.
    """
    symbol, trade = trader.symbol, trader.params.trade
    current = trader.ledger.position(symbol)  # reconciled: the exchange's
    if trade.capital > 0 and current != 0 and np.sign(current) == target:
        return 0  # sized by capital: a held position keeps its size (no hourly re-sizing)
    size = min(position_size(trade, price), trade.max_quantity)
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
            continue  # (its fill moved the position already)
        trader.ledger.record_intent(order)  # committed before the order leaves
        filled, sends = send(trader, order, price=price)
        sent += sends
        current = round(trader.ledger.position(symbol) + filled.holding_change, 8)
        trader.ledger.record_fill(filled, position_after=current)
    return sent


def position_size(trade, price: float) -> float:
    """Base asset per position: trade.quantity, or trade.capital's worth at price (rounded
    down to 1e-6)."""
    if trade.capital <= 0:
        return trade.quantity
    return float(np.floor(trade.capital / price * 1e6) / 1e6)


def send(trader: Trader, order: Order, *, price: float) -> tuple[Order, int]:
    """The order placed once, and again only after the exchange said it has none of it.

    Returns:
        The filled order, and how many POSTs were made (0: found filled already).

    Raises:
        OrderRejected: the exchange refused it (recorded rejected, with its code).
        ExchangeError: its fate is unknown after MAX_SENDS (recorded, may exist).
    """
    ledger, broker = trader.ledger, trader.broker
    found = broker.lookup(order)  # a crash after sending: the exchange knows
    if found is not None and found.status == "filled":
        log.warning("%s was already on the exchange: recorded, not sent again", order.client_order_id)
        return found, 0
    posts = 0
    for _ in range(MAX_SENDS):
        posts += 1
        try:
            return broker.place(order, price=price), posts
        except OrderRejected as exc:
            ledger.record_failure(order, status="rejected", code=exc.code, message=str(exc),
                                  may_exist=False)  # fmt: skip
            raise
        except OrderInDoubt as exc:
            ledger.record_failure(order, status="intent", code=exc.code, message=str(exc),
                                  may_exist=True)  # fmt: skip
            log.warning("%s; looking it up before anything is sent again", exc)
            found = broker.lookup(order)
            if found is not None and found.status == "filled":
                return found, posts
            if found is not None:  # booked and not filled: the exchange refused it after all
                ledger.record_failure(order, status="rejected", code=None, may_exist=False,
                                      message=found.error_message or "not filled")  # fmt: skip
                raise OrderRejected(f"{order.client_order_id}: {found.error_message}") from None
    raise ExchangeError(
        f"{order.client_order_id}: sent {posts} times, and each time the exchange said it has "
        "no such order; recorded, and the next cycle looks it up again"
    )


def legs(current: float, target: float) -> list[tuple[str, float]]:
    """close (to flat) and/or open (from flat) legs: a flip is both."""
    if np.isclose(current, target, rtol=0, atol=1e-9):
        return []
    steps = []
    if current != 0 and (target == 0 or np.sign(target) != np.sign(current)):
        steps.append(("close", -current))
        current = 0.0
    if target != 0:
        steps.append(("open", target - current))
    return steps


def settle(ledger: Ledger, candles: pd.DataFrame, params: Params) -> None:
    """Outcomes and equity for traded hours whose next candle has closed, then the kill switch,
    measured from the equity base (1, or the last resume's)."""
    cost, symbol = params.backtest.cost, params.data.symbol
    closes = candles["close"]
    settled = ledger.outcome_hours(symbol)
    previous_target = 0
    for row in ledger.traded_predictions(symbol, before=candles.index[-1].to_pydatetime()):
        hour = pd.Timestamp(row["hour"])
        target = int(row["target"])
        if hour not in settled:
            following = hour + pd.Timedelta(params.data.interval_delta)
            if hour not in closes.index or following not in closes.index:
                previous_target = target
                continue
            market = float(closes[following] / closes[hour] - 1.0)
            earned = float(position_return(target, previous_target, market, cost=cost))
            equity, hold = ledger.last_equity(symbol)
            ledger.record_outcome(
                {
                    "hour": hour.to_pydatetime(), "symbol": symbol, "close": float(closes[hour]),
                    "next_close": float(closes[following]), "actual_up": market > 0,
                    "target": target, "correct": None if target == 0 else (market > 0) == (target > 0),
                    "strategy_return": earned, "market_return": market,
                },
                equity_row={
                    "hour": hour.to_pydatetime(), "equity": equity * (1 + earned),
                    "buy_and_hold": hold * (1 + market),
                },
            )  # fmt: skip
        previous_target = target
    equity, _ = ledger.last_equity(symbol)
    base = ledger.equity_base(symbol)
    drawdown = equity / base - 1.0
    if drawdown < params.trade.kill_switch_return and ledger.own_halt(symbol) is None:
        since = "" if base == 1.0 else f" since the last resume (equity {base:.4f})"
        reason = (
            f"cumulative return {drawdown:+.2%}{since} fell below "
            f"{params.trade.kill_switch_return:+.2%}"
        )
        log.error("kill switch: %s; trading halts", reason)
        ledger.halt(symbol, kind=KILL_SWITCH, reason=reason, equity_now=equity)


def resume(
    ledger: Ledger, symbol: str, *, by: str, note: str, weights: dict[str, float] | None = None
) -> str:
    """Clears the symbol's (or the book's: BOOK, with the symbols' weights) kill switch; later
    cycles measure the return from the equity now.

    Returns what was done, for the operator.
    """
    halt = ledger.own_halt(symbol)  # exactly this symbol's (BOOK: the book's)
    if halt is None:
        book = ledger.own_halt(BOOK) if symbol != BOOK else None
        extra = f"; the book is halted ({book.reason}): `--symbol '*'`" if book else ""
        return f"{symbol} was not halted{extra}"
    if halt.kind != KILL_SWITCH:
        return (
            f"{symbol} is halted by a reconcile difference ({halt.reason}); "
            "`klinecast trade resolve` decides that one"
        )
    equity = book_equity(ledger, weights or {}) if symbol == BOOK else ledger.last_equity(symbol)[0]
    ledger.resume(halt, by=by, decision=f"resumed: {note}", equity_base=equity)
    return (
        f"the kill switch ({halt.reason}) is cleared by {by}; later cycles measure the return "
        f"from equity {equity:.4f}"
    )


def resolve(trader: Trader, *, adopt: str, by: str, note: str) -> str:
    """Ends a reconcile halt with the operator's decision, on record.

    Args:
        adopt: "exchange": the ledger takes the exchange's position (an order it never knew
            of); "ledger": the baseline moves so that the exchange's position equals the
            ledger's (coins moved in or out of the account by hand).

    Returns what was done.
    """
    ledger, symbol = trader.ledger, trader.symbol
    halt = ledger.own_halt(symbol)
    if halt is None or halt.kind != RECONCILE:
        return f"{symbol} has no reconcile difference to resolve"
    holding = trader.broker.holding(symbol)
    key = f"baseline:{symbol}"
    baseline = float(ledger.get_state(key) or 0.0)
    ours, theirs = ledger.position(symbol), holding - baseline
    if adopt == "exchange":
        ledger.set_position(symbol, round(theirs, 8), hour=pd.Timestamp.now(tz="UTC"))
        done = f"the ledger takes the exchange's position {theirs:+.8f} (it held {ours:+.8f})"
    else:
        ledger.set_state(key, repr(holding - ours))
        done = f"the exchange's baseline moves to {holding - ours:.8f}, keeping the ledger's {ours:+.8f}"
    ledger.resume(halt, by=by, decision=f"{done}: {note}")
    return f"{symbol}: {done}; decided by {by}"


def with_params(trader: Trader, **trade_changes) -> Trader:
    """The same trader with some trade params changed (tests, replays)."""
    params = dataclasses.replace(
        trader.params, trade=dataclasses.replace(trader.params.trade, **trade_changes)
    )
    return dataclasses.replace(trader, params=params)


def book_equity(ledger: Ledger, weights: dict[str, float]) -> float:
    """The book's equity (1 = start): each settled hour's return is the weighted sum of the
    symbols' after-cost returns that hour, as the research's portfolio combines them."""
    returns: dict = {}
    for row in ledger.outcomes():
        weight = weights.get(row["symbol"], 0.0)
        returns[row["hour"]] = returns.get(row["hour"], 0.0) + weight * row["strategy_return"]
    return float(np.prod([1.0 + r for r in returns.values()])) if returns else 1.0


@dataclass(frozen=True)
class BookResult:
    """One hour of the book: each symbol's cycle, and whether the book's kill switch holds."""

    hour: pd.Timestamp
    symbols: dict[str, CycleResult]
    equity: float
    halt: str = ""

    @property
    def exit_code(self) -> int:
        """The worst of the symbols' (halted 3, busy 4, no trade 1), else 0."""
        codes = [r.exit_code for r in self.symbols.values()]
        return max(codes, key=lambda c: (c != 0, c)) if codes else 0


def run_book(traders: dict[str, Trader], params: Params, *, hour: pd.Timestamp) -> BookResult:
    """One hour of every symbol's cycle (each with its own position, cap, lock and kill
    switch), then the book's kill switch: when the book's equity since its last resume falls
    below trade.book_kill_switch_return, every symbol halts (flat) until
    `klinecast trade resume --symbol '*'`.

    Args:
        traders: symbol -> its trader (params narrowed to the symbol).
        params: the whole params (the weights, the book's kill switch).

    Raises:
        LedgerError: the database is unavailable.
    """
    weights = Book(params).weights
    results = {}
    for symbol, trader in traders.items():
        try:
            results[symbol] = run_once(trader, hour=hour)
        except ExchangeError as exc:  # one symbol's exchange failure does not stop the book
            log.error("hour %s: %s: %s", hour, symbol, exc)
            results[symbol] = CycleResult(hour, "no_trade", reason=f"exchange: {exc}")
    ledger = next(iter(traders.values())).ledger
    equity = book_equity(ledger, weights)
    base = ledger.equity_base(BOOK)
    drawdown = equity / base - 1.0
    limit = params.trade.book_kill_switch_return
    halt = ""
    if drawdown < limit and ledger.own_halt(BOOK) is None:
        halt = f"the book's cumulative return {drawdown:+.2%} fell below {limit:+.2%}"
        log.error("kill switch: %s; every symbol halts", halt)
        ledger.halt(BOOK, kind=KILL_SWITCH, reason=halt, equity_now=equity)
    return BookResult(hour, results, equity, halt)
