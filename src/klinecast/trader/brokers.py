"""Brokers behind one interface: Binance spot testnet (python-binance) and a paper broker.

Every order carries a deterministic client order id (symbol, hour, leg), so the exchange itself
remembers whether an hour's order was sent: `lookup` asks it. `place` sends one POST and never
retries it: a POST that failed after it may have reached the exchange raises OrderInDoubt, and
the caller looks the order up before anything is sent again (klinecast.trader.cycle), and, when
the lookup finds nothing, waits out the request's recvWindow (`wait_until_unbookable`): after
it, Binance refuses that request wherever it is, so a second lookup that finds nothing is final.

An answer becomes an Order with the exchange's status and what executed of it (Binance's
`executedQty`, `cummulativeQuoteQty`, and the commissions of its trades): only what executed
moves a position, net of a commission taken in the base asset. `balance` is what the exchange
holds of the symbol's base asset, the truth the ledger's position is reconciled against.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from klinecast.config import BacktestParams
from klinecast.data import market
from klinecast.data.market import OrderInDoubt, OrderRejected  # noqa: F401 (their home here)
from klinecast.retries import RetrySettings
from klinecast.trader.filters import SymbolRules
from klinecast.trader.ledger import Order
from klinecast.trader.tables import paper_orders

log = logging.getLogger("klinecast.trader")
#: Binance's order statuses as the ledger's: open while it may still execute, canceled once it
#: ended before it filled (what executed of it stays executed).
STATUSES = {
    "NEW": "open", "PENDING_NEW": "open", "PARTIALLY_FILLED": "open", "PENDING_CANCEL": "open",
    "FILLED": "filled", "CANCELED": "canceled", "EXPIRED": "canceled",
    "EXPIRED_IN_MATCH": "canceled", "REJECTED": "rejected",
}  # fmt: skip
#: How far ahead of the exchange's clock Binance still accepts a request's timestamp.
AHEAD_MS = 1000.0


def client_order_id(symbol: str, hour: dt.datetime, leg: str) -> str:
    """Binance allows 36 characters of [.A-Z:/a-z0-9_-]: kc-BTCUSDT-2021120113-open."""
    return f"kc-{symbol}-{hour:%Y%m%d%H}-{leg}"


@dataclass(frozen=True)
class Balance:
    """What the account holds of an asset: free, and locked in open orders."""

    free: float
    locked: float = 0.0

    @property
    def total(self) -> float:
        return self.free + self.locked


class Broker(Protocol):
    def rules(self, symbol: str) -> SymbolRules:
        """The symbol's assets and order filters (Binance: exchangeInfo)."""

    def balance(self, symbol: str) -> Balance:
        """What the exchange holds of the symbol's base asset."""

    def lookup(self, order: Order) -> Order | None:
        """The order as the exchange has it now, or None if it has none."""

    def place(self, order: Order, *, price: float, rules: SymbolRules) -> Order:
        """Sends one market order; returns it as the exchange answered (filled, or open).

        Raises:
            OrderRejected: refused, never booked.
            OrderInDoubt: the order may exist; look it up.
        """

    def cancel(self, order: Order) -> Order:
        """Cancels an open order; returns it as it ended (what executed of it stays)."""

    def wait_until_unbookable(self, order: Order, *, ended_by: dt.datetime | None = None) -> None:
        """Returns once no request of the order sent so far can still be booked.

        Args:
            ended_by: when the process that sent the order's requests had ended at the latest
                (None: now), for an order another process sent.
        """


class PaperBroker:
    """A simulated exchange: fills at the candle's close moved by the slippage against the
    order (a BUY pays more, a SELL gets less), pays the fee from params in the quote asset,
    and books every order in a book of its own (the `paper_orders` table of the ledger's
    database, apart from the ledger's own `orders`), so that the ledger reconciles against it
    as against an exchange. Its fills cost what the backtest charges, so a replay equals the
    backtest. It has no minimums and fills at once: its orders are never open, never late."""

    def __init__(self, *, fee: float, engine: sa.Engine, slippage: float = 0.0):
        self.fee = fee
        self.slippage = slippage
        self.engine = engine

    @classmethod
    def charging(cls, costs: BacktestParams, *, engine: sa.Engine) -> PaperBroker:
        """A paper broker that charges the backtest's fee and slippage."""
        return cls(fee=costs.fee, slippage=costs.slippage, engine=engine)

    def rules(self, symbol: str) -> SymbolRules:
        return SymbolRules.unrestricted(symbol, fetched_at=dt.datetime.now(dt.UTC))

    def lookup(self, order: Order) -> Order | None:
        query = sa.select(paper_orders).where(
            paper_orders.c.client_order_id == order.client_order_id
        )
        with self.engine.begin() as c:
            row = c.execute(query).first()
        return None if row is None else self._filled(order, price=row.price, fee=row.fee)

    def place(self, order: Order, *, price: float, rules: SymbolRules) -> Order:
        price = price * (1 + self.slippage if order.side == "BUY" else 1 - self.slippage)
        fee = abs(order.qty) * price * self.fee
        with self.engine.begin() as c:
            c.execute(
                paper_orders.insert().values(
                    client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                    qty=order.qty, price=price, fee=fee, booked_at=dt.datetime.now(dt.UTC),
                )  # fmt: skip
            )
        return self._filled(order, price=price, fee=fee)

    def cancel(self, order: Order) -> Order:
        return self.lookup(order) or order  # filled at once: nothing is ever open

    def wait_until_unbookable(self, order: Order, *, ended_by: dt.datetime | None = None) -> None:
        return None  # a paper order is booked while its POST is made, or never

    def _filled(self, order: Order, *, price: float, fee: float) -> Order:
        return dataclasses.replace(
            order, status="filled", exchange_status="FILLED", executed_qty=order.qty,
            quote_qty=order.qty * price, fill_price=price, fee=fee,
            exchange_order_id=f"paper-{order.client_order_id}",
        )  # fmt: skip

    def balance(self, symbol: str) -> Balance:
        signed = sa.case((paper_orders.c.side == "BUY", paper_orders.c.qty), else_=-paper_orders.c.qty)
        query = sa.select(sa.func.coalesce(sa.func.sum(signed), 0.0)).where(
            paper_orders.c.symbol == symbol
        )
        with self.engine.begin() as c:
            return Balance(float(c.execute(query).scalar()))


class BinanceTestnetBroker:
    """Market orders on the Binance spot testnet; keys come from the environment only.

    Every signed request carries `recvWindow` = recv_window_ms (python-binance sends its
    REQUEST_RECVWINDOW with each), so that a request delayed on its way is refused by the
    exchange once that window has passed, never booked late.
    """

    def __init__(
        self,
        binance,
        *,
        retry: RetrySettings = market.EXCHANGE_RETRY,
        recv_window_ms: float = 5000.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.binance = binance
        self.binance.REQUEST_RECVWINDOW = recv_window_ms
        self.retry = retry
        self.recv_window_ms = recv_window_ms
        self.sleep = sleep
        self._rules: dict[str, SymbolRules] = {}
        #: client order id -> the latest a POST of it can have been stamped (local ms)
        self._sent_by: dict[str, float] = {}

    def rules(self, symbol: str) -> SymbolRules:
        info = market.call(
            f"GET /api/v3/exchangeInfo {symbol}",
            lambda: self.binance.get_symbol_info(symbol),
            retry=self.retry,
        )
        if not info:
            raise market.ExchangeError(f"Binance does not list the symbol {symbol}")
        self._rules[symbol] = SymbolRules.from_exchange_info(info, fetched_at=dt.datetime.now(dt.UTC))
        return self._rules[symbol]

    def base_asset(self, symbol: str) -> str:
        if symbol not in self._rules:
            self.rules(symbol)
        return self._rules[symbol].base_asset

    def balance(self, symbol: str) -> Balance:
        asset = self.base_asset(symbol)
        found = market.call(
            f"GET /api/v3/account ({asset})",
            lambda: self.binance.get_asset_balance(asset=asset),
            retry=self.retry,
        )
        if not found:
            return Balance(0.0)
        return Balance(float(found["free"]), float(found["locked"]))

    def lookup(self, order: Order) -> Order | None:
        try:
            found = market.call(
                f"GET /api/v3/order {order.client_order_id}",
                lambda: self.binance.get_order(
                    symbol=order.symbol, origClientOrderId=order.client_order_id
                ),
                retry=self.retry,
            )
        except market.ExchangeError as exc:
            if exc.code == -2013:  # "Order does not exist."
                return None
            raise
        return self._answered(order, found)

    def place(self, order: Order, *, price: float, rules: SymbolRules) -> Order:
        try:
            sent = market.send_once(
                f"POST /api/v3/order {order.client_order_id}",
                lambda: self.binance.create_order(
                    symbol=order.symbol,
                    side=order.side,
                    type="MARKET",
                    quantity=rules.text(order.qty),
                    newClientOrderId=order.client_order_id,
                    newOrderRespType="FULL",
                ),
            )
        finally:  # python-binance stamped it (time.time()) before this returns
            self._sent_by[order.client_order_id] = time.time() * 1000
        return self._answered(order, sent)

    def cancel(self, order: Order) -> Order:
        try:
            ended = market.call(
                f"DELETE /api/v3/order {order.client_order_id}",
                lambda: self.binance.cancel_order(
                    symbol=order.symbol, origClientOrderId=order.client_order_id
                ),
                retry=self.retry,
            )
        except market.ExchangeError as exc:
            if exc.code != -2011:  # "Unknown order sent.": it ended meanwhile
                raise
            return self.lookup(order) or order
        return self._answered(order, ended)

    def server_time_ms(self) -> float:
        answer = market.call(
            "GET /api/v3/time", lambda: self.binance.get_server_time(), retry=self.retry
        )
        return float(answer["serverTime"])

    def wait_until_unbookable(self, order: Order, *, ended_by: dt.datetime | None = None) -> None:
        """Waits until the exchange's clock is past the order's last request's timestamp plus
        recvWindow: Binance checks it on receipt and again just before the matching engine, so
        that request can no longer be booked. A request another process sent was stamped, on
        its own clock, before that process ended (ended_by, or now): a pod's clock may be
        ahead by up to the second Binance tolerates, which is added."""
        if order.client_order_id in self._sent_by:
            stamped_by = self._sent_by[order.client_order_id]
        else:
            ended = time.time() if ended_by is None else ended_by.timestamp()
            stamped_by = ended * 1000 + AHEAD_MS
        deadline = stamped_by + self.recv_window_ms
        while (now := self.server_time_ms()) <= deadline:
            self.sleep(min((deadline - now) / 1000 + 0.05, self.recv_window_ms / 1000))

    def _answered(self, order: Order, answer: dict) -> Order:
        """The order as Binance's answer describes it: its status, what executed and at what
        price, and its commissions (an order's answer lists its fills; a query's does not,
        so they are read from the order's trades)."""
        status = answer["status"]
        executed = float(answer["executedQty"])
        quote = float(answer["cummulativeQuoteQty"])
        if executed > 0 and "fills" not in answer:
            answer = answer | {"fills": self._trades(order, answer["orderId"])}
        base = self.base_asset(order.symbol)
        price = quote / executed if executed else None
        base_fee = quote_fee = 0.0
        for fill in answer.get("fills") or []:
            commission = float(fill["commission"])
            if fill["commissionAsset"] == base:
                base_fee += commission
                quote_fee += commission * float(fill["price"])
            elif fill["commissionAsset"] == self._rules[order.symbol].quote_asset:
                quote_fee += commission
            else:  # paid in another asset (BNB): it moves neither side of the pair
                log.info("%s: commission in %s", order.client_order_id, fill["commissionAsset"])
        return dataclasses.replace(
            order,
            status=STATUSES[status] if status in STATUSES else "open",
            exchange_status=status,
            executed_qty=executed,
            quote_qty=quote,
            fill_price=price,
            fee=quote_fee if executed else None,
            base_fee=base_fee,
            exchange_order_id=str(answer["orderId"]),
            error_message=f"Binance says {status}" if status == "REJECTED" else order.error_message,
        )

    def _trades(self, order: Order, order_id) -> list[dict]:
        trades = market.call(
            f"GET /api/v3/myTrades {order.client_order_id}",
            lambda: self.binance.get_my_trades(symbol=order.symbol, orderId=order_id),
            retry=self.retry,
        )
        return [
            {"commission": t["commission"], "commissionAsset": t["commissionAsset"],
             "price": t["price"]}
            for t in trades
        ]  # fmt: skip
