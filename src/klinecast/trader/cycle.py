"""One hourly cycle: reconcile with the exchange, then closed candles -> InferenceService ->
target position -> orders -> ledger.

What the cycle guarantees, and how:

- **One cycle per symbol at a time.** The cycle holds a lock in the ledger's database (a
  PostgreSQL advisory lock, or an flock beside a SQLite file) from reconciling to recording;
  a second run waits for it (trade.lock_wait_seconds), then finds the hour done; if the first
  does not finish in that time, the second sends nothing and says so (status `busy`).
- **Hours go forward, and an hour's record stays.** An hour older than the newest on record
  for the symbol is refused before anything is read or sent (a clock behind); a traded hour is
  never rewritten: a rerun reconciles and reports, and a later record of a failed hour is an
  attempt that names the one it corrects.
- **The exchange's rules.** The symbol's filters (exchangeInfo: LOT_SIZE, NOTIONAL or
  MIN_NOTIONAL) are fetched every cycle and kept with their age; every quantity is rounded
  down to the step, and an order the filters would refuse is not sent (the reason is on
  record). A close sells what is free of the position, to the step; what is left below the
  smallest order is dust, kept apart from the position.
- **The exchange is the source of truth, and the cycle reconciles before it acts.** Every
  order whose end is unknown (an intent, or an order open at the exchange) is looked up by its
  client order id; one still open is cancelled; what executed of each moves the position, net
  of a commission in the base asset. Then the ledger's position and dust are compared with
  what the exchange holds (the testnet's balance of the base asset against its baseline, or
  the paper broker's own book): a difference beyond one step (at least
  trade.reconcile_tolerance) halts the symbol until an operator resolves it (`klinecast trade
  resolve`); a halt that a late fill explains clears itself.
- **An order is never resent while it may still be booked.** Its intent is committed before
  it leaves; a POST that failed after it may have reached the exchange is looked up, and when
  the exchange has none, the cycle waits until the request's timestamp + recvWindow has passed
  by the exchange's clock (after it Binance refuses that request wherever it is) and looks it
  up again: only then is it sent again (at most MAX_SENDS times).
- **The cap holds at the exchange, open orders included**: orders move from the reconciled
  position; while an order is open nothing more is sent; an open leg buys at most the cap
  less any dust on its side.
- **Failures are on record**: a failed cycle (market data, account, filters, clock, a
  refusal, an order whose fate stays unknown) is a row of `failures` and its hour's record,
  with the stage, Binance's code and message; a refused or doubtful order keeps them too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.book import Book
from klinecast.config import Params
from klinecast.data.market import ExchangeError, OrderInDoubt, OrderRejected
from klinecast.errors import KlinecastError
from klinecast.indicators import fetch_hours
from klinecast.research import strategy
from klinecast.research.backtest import position_return
from klinecast.serving.client import InferenceError, Prediction
from klinecast.trader import shadow as shadow_book
from klinecast.trader.brokers import Balance, Broker, client_order_id
from klinecast.trader.filters import FiltersError, SymbolRules
from klinecast.trader.ledger import BOOK, BOOKED, Ledger, LedgerError, Order
from klinecast.trader.locks import LockBusy

log = logging.getLogger("klinecast.trader")
#: How often one order may be sent in a cycle: each resend follows a lookup that found none
#: after the previous request's recvWindow had passed.
MAX_SENDS = 3
#: How many orders one leg of an hour may take (kc-...-open, then -open2, ...): a leg sent
#: again after an earlier order of it was booked and ended needs a client order id of its own.
MAX_LEG_ORDERS = 9
KILL_SWITCH, RECONCILE = "kill_switch", "reconcile"
#: The exit codes of `klinecast trade once` by status (what a CronJob's failure shows).
EXIT_CODES = {"traded": 0, "already_traded": 0, "no_trade": 1, "failed": 1, "halted": 3, "busy": 4}
#: Binance's code for a request stamped outside its recvWindow (a clock ahead or far behind).
CLOCK_CODE = -1021


@dataclass(frozen=True)
class OrderReport:
    """What one order of a cycle became, for the cycle's summary line."""

    side: str
    qty: float
    status: str  # filled | partly filled | open | canceled | refused | not sent
    detail: str = ""

    @property
    def sent(self) -> bool:
        return self.status != "not sent"

    def __str__(self) -> str:
        return f"{self.side} {self.qty:g} {self.status}" + (f" {self.detail}" if self.detail else "")

    @classmethod
    def of(cls, order: Order) -> OrderReport:
        if order.status == "filled":
            return cls(order.side, order.qty, "filled", f"at {order.fill_price:.8g}")
        executed = f"({order.executed_qty:g} executed)"
        if order.status == "open":
            return cls(order.side, order.qty, "partly filled" if order.executed_qty else "open", executed)
        return cls(order.side, order.qty, order.status, executed)


@dataclass(frozen=True)
class CycleResult:
    hour: pd.Timestamp
    status: str  # traded | already_traded | no_trade | failed | halted | busy
    #: the side held after the cycle (-1, 0, 1; open orders count), None if unknown
    target: int | None = None
    prob_up: float | None = None
    orders: tuple[OrderReport, ...] = ()
    reason: str = ""
    stage: str = ""  # a failed cycle's stage

    @property
    def orders_sent(self) -> int:
        return sum(1 for o in self.orders if o.sent)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


class CycleFailure(KlinecastError):
    """A step of the cycle failed; its stage and the exchange's code go on record."""

    def __init__(self, stage: str, message: str, *, code: int | None = None):
        super().__init__(message)
        self.stage = stage
        self.code = code


@contextmanager
def stage(name: str) -> Iterator[None]:
    """An exchange failure inside is the cycle's failure at this stage (a refused order's,
    the refusal; Binance's -1021, the clock's)."""
    try:
        yield
    except (CycleFailure, LedgerError):
        raise  # a stage's failure already, or the ledger's: nothing can be recorded
    except OrderRejected as exc:
        raise CycleFailure("refusal", str(exc), code=exc.code) from None
    except ExchangeError as exc:
        raise CycleFailure("clock" if exc.code == CLOCK_CODE else name, str(exc), code=exc.code) from None
    except FiltersError as exc:
        raise CycleFailure("filters", str(exc)) from None
    except KlinecastError as exc:  # e.g. candles that break the candle rules
        raise CycleFailure(name, str(exc)) from None


@dataclass
class Trader:
    params: Params
    ledger: Ledger
    broker: Broker
    #: (until, count) -> the count closed candles ending at until
    market: Callable[[pd.Timestamp, int], pd.DataFrame]
    #: candles -> Prediction (raises InferenceError)
    predict: Callable[[pd.DataFrame], Prediction]
    #: the challenger's predict, for the shadow book (`trader.shadow`); None: no shadow
    shadow: Callable[[pd.DataFrame], Prediction] | None = None

    @property
    def symbol(self) -> str:
        return self.params.data.symbol


def run_once(trader: Trader, *, hour: pd.Timestamp) -> CycleResult:
    """Trades the hour whose candle opened at `hour` and has closed.

    Raises:
        LedgerError: the database is unavailable (before anything is sent).
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
    ledger, symbol = trader.ledger, trader.symbol
    started = f"cycle_started:{symbol}"  # the lock's last holder began then, and ended after
    previous = ledger.get_state(started)
    ledger.set_state(started, dt.datetime.now(dt.UTC).isoformat())
    previous_cycle = None if previous is None else dt.datetime.fromisoformat(previous)
    newest = ledger.newest_hour(symbol)
    if newest is not None and hour.to_pydatetime() < newest:
        reason = (
            f"hour {hour:%Y-%m-%d %H:%M} is older than {newest:%Y-%m-%d %H:%M}, the newest on "
            f"record for {symbol} (is the clock behind?); nothing was sent"
        )
        log.error("%s: %s", symbol, reason)
        ledger.record_cycle_failure(
            symbol=symbol, hour=hour.to_pydatetime(), stage="clock", code=None, message=reason
        )
        return CycleResult(hour, "failed", reason=reason, stage="clock")
    reports: list[OrderReport] = []
    known: dict = {}  # what the cycle learnt before it failed: the close, the prediction
    try:
        return _cycle(trader, hour, reports, known, previous_cycle=previous_cycle)
    except CycleFailure as failure:
        return failed(trader, hour, failure, reports=reports, known=known)


def _cycle(
    trader: Trader,
    hour: pd.Timestamp,
    reports: list,
    known: dict,
    *,
    previous_cycle: dt.datetime | None,
) -> CycleResult:
    ledger, params, symbol = trader.ledger, trader.params, trader.symbol
    at = hour.to_pydatetime()
    rules = current_rules(trader)
    with stage("account"):
        executed = reconcile_orders(trader, previous_cycle=previous_cycle)
        difference, free = reconcile_position(trader, hour, rules, explained_by=executed)
    done = ledger.prediction(at, symbol)
    if done is not None and done["status"] in ("traded", "halted"):  # its record stays
        if difference is not None:
            return CycleResult(hour, "halted", held_side(ledger, symbol), reason=halt_reason(ledger, symbol))
        return CycleResult(hour, "already_traded", done["target"], done["prob_up"])
    with stage("market_data"):
        candles = trader.market(hour, fetch_hours(params.features.min_history))
    settle(ledger, candles, params)
    shadow_book.settle(ledger, candles, params)
    close = known["close"] = float(candles["close"].iloc[-1])
    keep_dust(ledger, symbol, rules, price=close, hour=at)
    if trader.shadow is not None:  # on paper, whatever the traded book does this hour
        shadow_book.call(ledger, trader.shadow, params, hour=hour, candles=candles)
    halt = ledger.open_halt(symbol)
    if halt is not None:
        if halt.kind == KILL_SWITCH:  # flat while halted; a reconcile halt sends nothing
            with stage("order"):
                trade_to(trader, hour, target=0, price=close, rules=rules, free=free, reports=reports)
        held = held_side(ledger, symbol)
        reason = halt_reason(ledger, symbol)
        ledger.record_prediction(at, symbol=symbol, target=held, close=close, status="halted", reason=reason)
        return CycleResult(hour, "halted", held, orders=tuple(reports), reason=reason)
    try:
        prediction = trader.predict(candles)
    except InferenceError as exc:
        log.error("hour %s: no trade: %s", hour, exc)
        held = held_side(ledger, symbol)
        ledger.record_prediction(
            at, symbol=symbol, target=held, close=close, status="no_trade", reason=str(exc)
        )
        return CycleResult(hour, "no_trade", held, reason=str(exc))
    known |= {
        "prob_up": prediction.prob_up, "model_version": prediction.model_version,
        "feature_time": prediction.feature_time,
    }  # fmt: skip
    decided_at = hour + params.data.interval_delta  # when the hour's candle closed
    target = strategy.next_position(
        prediction.prob_up, prediction.rule, holding(ledger, symbol, hour),
        decision_hour=decided_at.hour,
    )  # fmt: skip
    with stage("order"):
        trade_to(trader, hour, target=target, price=close, rules=rules, free=free, reports=reports)
    held = held_side(ledger, symbol)
    unsent = "; ".join(f"not sent: {r.detail}" for r in reports if not r.sent)
    ledger.record_prediction(
        at, symbol=symbol, target=held, close=close, status="traded", reason=unsent or None,
        **{k: known[k] for k in ("prob_up", "model_version", "feature_time")},
    )  # fmt: skip
    return CycleResult(hour, "traded", held, prediction.prob_up, tuple(reports), unsent)


def failed(
    trader: Trader,
    hour: pd.Timestamp,
    failure: CycleFailure,
    *,
    reports: list | tuple = (),
    known: dict | None = None,
) -> CycleResult:
    """The hour's failure on record (a `failures` row, and the hour's record unless the hour
    is traded already), with the side held."""
    ledger, symbol, known = trader.ledger, trader.symbol, known or {}
    at = hour.to_pydatetime()
    log.error("hour %s: %s: %s failed: %s", hour, symbol, failure.stage, failure)
    ledger.record_cycle_failure(
        symbol=symbol, hour=at, stage=failure.stage, code=failure.code, message=str(failure)
    )
    held = held_side(ledger, symbol)
    done = ledger.prediction(at, symbol)
    if done is None or done["status"] != "traded":
        ledger.record_prediction(
            at, symbol=symbol, target=held, status="failed", reason=str(failure),
            stage=failure.stage, error_code=failure.code, **known,
        )  # fmt: skip
    prob = known["prob_up"] if "prob_up" in known else None
    return CycleResult(
        hour, "failed", held, prob, tuple(reports), reason=str(failure), stage=failure.stage
    )


def current_rules(trader: Trader) -> SymbolRules:
    """The symbol's filters, fetched this cycle and kept in the ledger with their age; when the
    fetch fails, the kept ones while younger than trade.filters_max_age_hours.

    Raises:
        CycleFailure: (filters) no usable filters.
    """
    ledger, symbol = trader.ledger, trader.symbol
    key = f"filters:{symbol}"
    try:
        with stage("filters"):
            rules = trader.broker.rules(symbol)
    except CycleFailure as failure:
        if failure.stage == "clock":
            raise
        kept = ledger.get_state(key)
        if kept is None:
            raise
        rules = SymbolRules.from_json(kept)
        age = dt.datetime.now(dt.UTC) - rules.fetched_at
        limit = dt.timedelta(hours=trader.params.trade.filters_max_age_hours)
        if age > limit:
            raise CycleFailure(
                "filters", f"{failure}; the kept filters are {age} old (more than {limit})",
                code=failure.code,
            ) from None  # fmt: skip
        log.warning("%s: %s; using the filters fetched %s ago", symbol, failure, age)
        return rules
    ledger.set_state(key, rules.to_json())
    return rules


def reconcile_orders(trader: Trader, *, previous_cycle: dt.datetime | None = None) -> list[str]:
    """Every order of the symbol whose end is unknown, of any hour, looked up at the exchange
    by its client order id: an intent the exchange has none of is absent once its recvWindow
    has passed (a request still on its way is refused after that); an order still open is
    cancelled; what executed moves the position. Returns the ids whose execution moved.

    Args:
        previous_cycle: when the lock's previous holder began. An intent last written before
            that was sent by a cycle that had ended by then: its requests' windows are
            counted from then, not from now.
    """
    ledger, broker = trader.ledger, trader.broker
    moved = []
    for order in ledger.unresolved_orders(trader.symbol):
        found = broker.lookup(order)
        if found is None and order.status == "intent":  # a crashed cycle's POST may still land
            before = previous_cycle is not None and order.updated_at < previous_cycle
            broker.wait_until_unbookable(order, ended_by=previous_cycle if before else None)
            found = broker.lookup(order)
        if found is None:
            ledger.record_failure(
                order, status="absent", code=None, may_exist=False,
                message="the exchange has no such order (looked up after its recvWindow passed)",
            )  # fmt: skip
            log.warning("%s: the exchange has no such order: recorded absent", order.client_order_id)
            continue
        if found.status == "open":  # a market order still open an hour on: end it
            try:
                found = broker.cancel(found)
            except ExchangeError as exc:
                log.warning("%s is open and could not be cancelled (%s): it stays exposure",
                            order.client_order_id, exc)  # fmt: skip
        if found.status == "rejected":
            ledger.record_failure(
                order, status="rejected", code=None, may_exist=False,
                message=found.error_message or "the exchange rejected it",
            )  # fmt: skip
            continue
        ledger.record_order(found)
        if found.executed_qty != order.executed_qty or found.base_fee != order.base_fee:
            moved.append(order.client_order_id)
            log.warning("%s: %s at the exchange (%g executed): recorded now",
                        order.client_order_id, found.exchange_status, found.executed_qty)  # fmt: skip
    return moved


def reconcile_position(
    trader: Trader, hour: pd.Timestamp, rules: SymbolRules, *, explained_by: list[str]
) -> tuple[float | None, float]:
    """The ledger's position and dust against what the exchange holds: recorded every cycle; a
    difference beyond one step (at least trade.reconcile_tolerance) halts the symbol; a
    reconcile halt is cleared when they agree again after fills recorded this cycle explain
    it. Returns the difference when it halts (else None) and what of the exchange's free
    balance is the trader's (what a close may sell).

    The exchange's position is its holding of the base asset less a baseline: the holding
    when the ledger first met the exchange with no order on record (an account holds coins of
    its own), moved only by `klinecast trade resolve`.
    """
    ledger, symbol = trader.ledger, trader.symbol
    balance = trader.broker.balance(symbol)
    baseline = _baseline(ledger, symbol, balance)
    exchange = balance.total - baseline
    position, dust = ledger.holding(symbol)
    ours = position + dust
    difference = exchange - ours
    tolerance = max(trader.params.trade.reconcile_tolerance, float(rules.step))
    agree = abs(difference) <= tolerance * (1 + 1e-9)
    ledger.record_reconciliation(
        hour=hour.to_pydatetime(), symbol=symbol, ledger_position=ours, exchange_position=exchange,
        difference=difference, tolerance=tolerance, agree=agree,
    )  # fmt: skip
    halt = ledger.own_halt(symbol)
    if agree:
        if halt is not None and halt.kind == RECONCILE and explained_by:
            decision = f"cleared: the late fill of {', '.join(explained_by)} explains the difference"
            ledger.resume(halt, by="klinecast", decision=decision)
            log.warning("%s: %s", symbol, decision)
        return None, balance.free - baseline
    if halt is None:
        reason = (
            f"the ledger holds {ours:+.8f} {symbol} but the exchange {exchange:+.8f} (difference "
            f"{difference:+.8f}, tolerance {tolerance:g})"
        )
        log.error("reconcile: %s; %s halts until `klinecast trade resolve`", reason, symbol)
        ledger.halt(symbol, kind=RECONCILE, reason=reason)
    return difference, balance.free - baseline


def _baseline(ledger: Ledger, symbol: str, balance: Balance) -> float:
    key = f"baseline:{symbol}"
    kept = ledger.get_state(key)
    if kept is not None:
        return float(kept)
    position, dust = ledger.holding(symbol)
    has_orders = any(o.symbol == symbol for o in ledger.orders())
    baseline = balance.total - (position + dust) if has_orders else balance.total
    ledger.set_state(key, repr(float(baseline)))
    return baseline


def halt_reason(ledger: Ledger, symbol: str) -> str:
    halt = ledger.open_halt(symbol)
    how = "trade resume" if halt.kind == KILL_SWITCH else "trade resolve"
    return f"halted ({halt.kind}): {halt.reason}; `klinecast {how}` decides what next"


def held_side(ledger: Ledger, symbol: str) -> int:
    """The side held now: the position and what the orders still open would add."""
    position, _ = ledger.holding(symbol)
    pending = sum(o.unexecuted for o in ledger.unresolved_orders(symbol))
    return int(np.sign(round(position + pending, 12)))


def holding(ledger: Ledger, symbol: str, hour: pd.Timestamp) -> strategy.Holding:
    """The book before this hour's decision: the side held (open orders count), and for how
    many hours in a row it has been held (the rule's minimum hold counts them)."""
    side = held_side(ledger, symbol)
    if side == 0:
        return strategy.FLAT
    targets = [int(r["target"]) for r in ledger.held_hours(symbol, before=hour.to_pydatetime())]
    held = strategy.holding_from_positions(targets)
    return held if held.position == side else strategy.Holding(side, 1)


def keep_dust(ledger: Ledger, symbol: str, rules: SymbolRules, *, price: float, hour) -> None:
    """A position no order could move (below the filters' minimums) is dust, not a position;
    left as it is while an order of the symbol is open."""
    position, _ = ledger.holding(symbol)
    if position and not ledger.unresolved_orders(symbol) and not rules.sellable(position, price=price):
        dust = ledger.move_to_dust(symbol, hour=hour)
        log.info("%s: %+g is below the smallest order: kept as dust (%+g)", symbol, position, dust)


def trade_to(
    trader: Trader,
    hour: pd.Timestamp,
    *,
    target: int,
    price: float,
    rules: SymbolRules,
    free: float,
    reports: list,
) -> None:
    """Moves the position to the target side: a close of what is held (what is free of it,
    rounded down to the step), then an open of `position_size` (at most the cap, less dust on
    that side), each only if the filters allow it. A side already held keeps its size (no
    top-up of a fee or a partial fill, no hourly re-sizing); nothing is sent while an order of
    the symbol is open, nor an open while the close has not filled. Appends what became of
    each order to reports.

    Raises:
        OrderRejected: an order was refused (on record).
        ExchangeError: an order's fate stayed unknown (on record), or a lookup failed.
    """
    ledger, symbol, trade = trader.ledger, trader.symbol, trader.params.trade
    pending = ledger.unresolved_orders(symbol)
    if pending:
        ids = ", ".join(o.client_order_id for o in pending)
        reports.append(OrderReport("-", 0.0, "not sent", f"{ids} still open at the exchange"))
        return
    position, dust = ledger.holding(symbol)
    side = int(np.sign(round(position, 12)))
    if side == target:
        return
    at = hour.to_pydatetime()
    if side != 0:
        mine = position + dust
        qty = rules.round_down(min(mine, max(free, 0.0)) if side > 0 else mine)
        why = rules.refusal(qty, price=price)
        if why is not None:
            ledger.move_to_dust(symbol, hour=at)
            reports.append(OrderReport(_side(-side), qty, "not sent", f"close: {why}; held as dust"))
        else:
            closed = _send_leg(trader, hour, "close", -side, qty, price=price, rules=rules, reports=reports)
            if closed.status != "filled":
                return
            keep_dust(ledger, symbol, rules, price=price, hour=at)
    if target == 0:
        return
    position, dust = ledger.holding(symbol)
    if position:  # the close left more than dust (coins not free): no open on top of it
        reports.append(OrderReport(_side(target), 0.0, "not sent", f"open: {position:+g} is held still"))
        return
    room = trade.max_quantity - max(target * dust, 0.0)
    qty = rules.round_down(min(position_size(trade, price), room))
    why = rules.refusal(qty, price=price)
    if why is not None:
        reports.append(OrderReport(_side(target), qty, "not sent", f"open: {why}"))
        return
    _send_leg(trader, hour, "open", target, qty, price=price, rules=rules, reports=reports)


def _side(sign: int) -> str:
    return "BUY" if sign > 0 else "SELL"


def _send_leg(
    trader: Trader,
    hour: pd.Timestamp,
    leg: str,
    sign: int,
    qty: float,
    *,
    price: float,
    rules: SymbolRules,
    reports: list,
) -> Order:
    """One order of a leg: its intent committed, sent, and what the exchange said recorded."""
    ledger, symbol = trader.ledger, trader.symbol
    order = Order(
        client_order_id=leg_order_id(ledger, symbol, hour, leg),
        hour=hour.to_pydatetime(),
        leg=leg,
        symbol=symbol,
        side=_side(sign),
        qty=qty,
    )
    ledger.record_intent(order)  # committed before the order leaves
    try:
        placed = send(trader, order, price=price, rules=rules)
    except OrderRejected as exc:
        reports.append(OrderReport(order.side, qty, "refused", f"({exc.code})" if exc.code else ""))
        raise
    ledger.record_order(placed)
    reports.append(OrderReport.of(placed))
    return placed


def leg_order_id(ledger: Ledger, symbol: str, hour: pd.Timestamp, leg: str) -> str:
    """The leg's client order id: kc-<symbol>-<hour>-<leg>, or -<leg>2, ... when an earlier
    order of the leg was booked (Binance accepts a reused id once that order ended, and the
    ledger keeps one row per order)."""
    for n in range(1, MAX_LEG_ORDERS + 1):
        found = client_order_id(symbol, hour, leg if n == 1 else f"{leg}{n}")
        known = ledger.order(found)
        if known is None or known.status not in BOOKED:
            return found
    raise LedgerError(f"{symbol} {hour}: {MAX_LEG_ORDERS} orders of the {leg} leg are on record")


def position_size(trade, price: float) -> float:
    """Base asset per position: trade.quantity, or trade.capital's worth at price (the
    symbol's filters round it down to its step)."""
    if trade.capital <= 0:
        return trade.quantity
    return trade.capital / price


def send(trader: Trader, order: Order, *, price: float, rules: SymbolRules) -> Order:
    """The order placed once, and again only once the exchange can no longer book the
    earlier request and a lookup still finds none of it.

    Returns:
        The order as the exchange has it (filled, or open).

    Raises:
        OrderRejected: the exchange refused it (recorded rejected, with its code).
        ExchangeError: its fate is unknown after MAX_SENDS, or a lookup failed (recorded,
            may exist: the next cycle looks it up).
    """
    ledger, broker = trader.ledger, trader.broker
    found = broker.lookup(order)  # a crash after sending: the exchange knows
    if found is not None:
        log.warning("%s was already on the exchange: recorded, not sent again", order.client_order_id)
        return _accepted(ledger, order, found)
    for posts in range(1, MAX_SENDS + 1):
        try:
            return _accepted(ledger, order, broker.place(order, price=price, rules=rules))
        except OrderRejected as exc:
            ledger.record_failure(order, status="rejected", code=exc.code, message=str(exc),
                                  may_exist=False)  # fmt: skip
            raise
        except OrderInDoubt as exc:
            ledger.record_failure(order, status="intent", code=exc.code, message=str(exc),
                                  may_exist=True)  # fmt: skip
            log.warning("%s; looking it up before anything is sent again", exc)
            found = broker.lookup(order)
            if found is None:  # on its way still, or lost: wait until it cannot be booked
                broker.wait_until_unbookable(order)
                found = broker.lookup(order)
            if found is not None:
                return _accepted(ledger, order, found)
            log.warning("%s: none at the exchange after its recvWindow (POST %d of %d)",
                        order.client_order_id, posts, MAX_SENDS)  # fmt: skip
    raise ExchangeError(
        f"{order.client_order_id}: sent {MAX_SENDS} times, and each time the exchange had none "
        "of it once its recvWindow had passed; recorded, and the next cycle looks it up again"
    )


def _accepted(ledger: Ledger, order: Order, found: Order) -> Order:
    """found, unless the exchange's engine rejected the order (REJECTED)."""
    if found.status != "rejected":
        return found
    message = f"{order.client_order_id}: {found.error_message}"
    ledger.record_failure(order, status="rejected", code=None, may_exist=False, message=message)
    raise OrderRejected(message)


def settle(ledger: Ledger, candles: pd.DataFrame, params: Params) -> None:
    """Outcomes and equity for the hours held whose next candle has closed, then the kill
    switch, measured from the equity base (1, or the last resume's). An hour held is one whose
    record says what was held after it: traded, and no-trade, failed or halted hours too (the
    position earned or lost through them); only a traded hour's call is right or wrong."""
    cost, symbol = params.backtest.cost, params.data.symbol
    closes = candles["close"]
    settled = ledger.outcome_hours(symbol)
    previous_target = 0
    for row in ledger.held_hours(symbol, before=candles.index[-1].to_pydatetime()):
        hour = pd.Timestamp(row["hour"])
        target = int(row["target"])
        if hour not in settled:
            following = hour + pd.Timedelta(params.data.interval_delta)
            if hour not in closes.index or following not in closes.index:
                previous_target = target
                continue
            market = float(closes[following] / closes[hour] - 1.0)
            earned = float(position_return(target, previous_target, market, cost=cost))
            called = target != 0 and row["status"] == "traded"
            equity, hold = ledger.last_equity(symbol)
            ledger.record_outcome(
                {
                    "hour": hour.to_pydatetime(), "symbol": symbol, "close": float(closes[hour]),
                    "next_close": float(closes[following]), "actual_up": market > 0,
                    "target": target, "correct": (market > 0) == (target > 0) if called else None,
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
    cycles measure the return from the equity now. A reconcile halt is not cleared here:
    `resolve` decides it.

    Returns what was done, for the operator.
    """
    halt = ledger.own_halt(symbol)  # exactly this symbol's (BOOK: the book's)
    if halt is None:
        book = ledger.own_halt(BOOK) if symbol != BOOK else None
        extra = f"; the book is halted ({book.reason}): `--symbol '*'`" if book else ""
        return f"{symbol} was not halted{extra}"
    if halt.kind != KILL_SWITCH:
        return (
            f"{symbol} is halted by a reconcile difference ({halt.reason}), not by its kill "
            "switch; `klinecast trade resolve --adopt exchange|ledger` decides that one"
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
    holding = trader.broker.balance(symbol).total
    key = f"baseline:{symbol}"
    baseline = float(ledger.get_state(key) or 0.0)
    position, dust = ledger.holding(symbol)
    ours, theirs = position + dust, holding - baseline
    if adopt == "exchange":
        ledger.set_position(symbol, round(theirs - dust, 12), dust=dust, hour=pd.Timestamp.now(tz="UTC"))
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
    """The book's equity (1 = start): capital split at the weights, never rebalanced, so the
    weighted sum of each symbol's equity over its settled hours, as the research's portfolio
    combines them (`research.portfolio.drifting_book`)."""
    growth: dict[str, float] = {}
    for row in ledger.outcomes():
        growth[row["symbol"]] = growth.get(row["symbol"], 1.0) * (1.0 + row["strategy_return"])
    return float(sum(share * growth.get(symbol, 1.0) for symbol, share in weights.items()))


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
        except ExchangeError as exc:  # one symbol's failure does not stop the book; on record
            results[symbol] = failed(trader, hour, CycleFailure("book", str(exc), code=exc.code))
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
