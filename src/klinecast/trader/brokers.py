"""Brokers behind one interface: Binance spot testnet (python-binance) and a paper broker.

Every order carries a deterministic client order id (symbol, hour, leg), so the exchange itself
remembers whether an hour's order was sent: `lookup` asks it. `place` sends one POST and never
retries it: a POST that failed after it may have reached the exchange raises OrderInDoubt, and
the caller looks the order up before anything is sent again (klinecast.trader.cycle).
`holding` is what the exchange holds of the symbol's base asset, the truth the ledger's
position is reconciled against.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

import sqlalchemy as sa

from klinecast.config import BacktestParams
from klinecast.data import market
from klinecast.data.market import OrderInDoubt, OrderRejected  # noqa: F401 (their home here)
from klinecast.retries import RetrySettings
from klinecast.trader.ledger import Order
from klinecast.trader.tables import paper_orders

#: Binance's final states of an order that never filled.
NOT_FILLED = ("REJECTED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH")


def client_order_id(symbol: str, hour: dt.datetime, leg: str) -> str:
    """Binance allows 36 characters of [.A-Z:/a-z0-9_-]: kc-BTCUSDT-2021120113-open."""
    return f"kc-{symbol}-{hour:%Y%m%d%H}-{leg}"


class Broker(Protocol):
    def lookup(self, order: Order) -> Order | None:
        """The order as the exchange has it (filled, or rejected), or None if it has none."""

    def place(self, order: Order, *, price: float) -> Order:
        """Sends one market order; returns it filled (price, fee, exchange id).

        Raises:
            OrderRejected: refused, never booked.
            OrderInDoubt: the order may exist; look it up.
        """

    def holding(self, symbol: str) -> float:
        """What the exchange holds of the symbol's base asset."""


class PaperBroker:
    """A simulated exchange: fills at the candle's close moved by the slippage against the
    order (a BUY pays more, a SELL gets less), pays the fee from params, and books every order
    in a book of its own (the `paper_orders` table of the ledger's database, apart from the
    ledger's own `orders`), so that the ledger reconciles against it as against an exchange.
    Its fills cost what the backtest charges, so a replay equals the backtest."""

    def __init__(self, *, fee: float, engine: sa.Engine, slippage: float = 0.0):
        self.fee = fee
        self.slippage = slippage
        self.engine = engine

    @classmethod
    def charging(cls, costs: BacktestParams, *, engine: sa.Engine) -> PaperBroker:
        """A paper broker that charges the backtest's fee and slippage."""
        return cls(fee=costs.fee, slippage=costs.slippage, engine=engine)

    def lookup(self, order: Order) -> Order | None:
        query = sa.select(paper_orders).where(
            paper_orders.c.client_order_id == order.client_order_id
        )
        with self.engine.begin() as c:
            row = c.execute(query).first()
        if row is None:
            return None
        return dataclasses.replace(
            order,
            status="filled",
            fill_price=row.price,
            fee=row.fee,
            exchange_order_id=f"paper-{order.client_order_id}",
        )

    def place(self, order: Order, *, price: float) -> Order:
        price = price * (1 + self.slippage if order.side == "BUY" else 1 - self.slippage)
        fee = abs(order.qty) * price * self.fee
        with self.engine.begin() as c:
            c.execute(
                paper_orders.insert().values(
                    client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                    qty=order.qty, price=price, fee=fee, booked_at=dt.datetime.now(dt.UTC),
                )  # fmt: skip
            )
        return dataclasses.replace(
            order,
            status="filled",
            fill_price=price,
            fee=fee,
            exchange_order_id=f"paper-{order.client_order_id}",
        )

    def holding(self, symbol: str) -> float:
        signed = sa.case((paper_orders.c.side == "BUY", paper_orders.c.qty), else_=-paper_orders.c.qty)
        query = sa.select(sa.func.coalesce(sa.func.sum(signed), 0.0)).where(
            paper_orders.c.symbol == symbol
        )
        with self.engine.begin() as c:
            return float(c.execute(query).scalar())


class BinanceTestnetBroker:
    """Market orders on the Binance spot testnet; keys come from the environment only."""

    def __init__(self, binance, *, retry: RetrySettings = market.EXCHANGE_RETRY):
        self.binance = binance
        self.retry = retry
        self._base_assets: dict[str, str] = {}

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

    def place(self, order: Order, *, price: float) -> Order:
        sent = market.send_once(
            f"POST /api/v3/order {order.client_order_id}",
            lambda: self.binance.create_order(
                symbol=order.symbol,
                side=order.side,
                type="MARKET",
                quantity=f"{order.qty:.8f}".rstrip("0").rstrip("."),
                newClientOrderId=order.client_order_id,
                newOrderRespType="FULL",
            ),
        )
        return self._answered(order, sent)

    def holding(self, symbol: str) -> float:
        asset = self.base_asset(symbol)
        balance = market.call(
            f"GET /api/v3/account ({asset})",
            lambda: self.binance.get_asset_balance(asset=asset),
            retry=self.retry,
        )
        if not balance:
            return 0.0
        return float(balance.get("free") or 0.0) + float(balance.get("locked") or 0.0)

    def base_asset(self, symbol: str) -> str:
        if symbol not in self._base_assets:
            info = market.call(
                f"GET /api/v3/exchangeInfo {symbol}",
                lambda: self.binance.get_symbol_info(symbol),
                retry=self.retry,
            )
            if not info:
                raise market.ExchangeError(f"Binance does not list the symbol {symbol}")
            self._base_assets[symbol] = info["baseAsset"]
        return self._base_assets[symbol]

    def _answered(self, order: Order, answer: dict) -> Order:
        """The order as Binance's answer describes it; a fee paid in the base asset is kept
        apart, since it changes the holding the position is reconciled against."""
        status = answer.get("status")
        if status in NOT_FILLED:
            return dataclasses.replace(
                order, status="rejected", exchange_order_id=str(answer.get("orderId")),
                error_message=f"Binance says {status}",
            )  # fmt: skip
        fills = answer.get("fills") or []
        qty = float(answer.get("executedQty") or 0.0)
        quote = float(answer.get("cummulativeQuoteQty") or 0.0)
        base = self._base_assets.get(order.symbol)
        base_fee = sum(
            float(f.get("commission", 0.0)) for f in fills if base and f.get("commissionAsset") == base
        )
        return dataclasses.replace(
            order,
            status="filled" if status == "FILLED" else "intent",
            fill_price=quote / qty if qty else None,
            fee=sum(float(f.get("commission", 0.0)) for f in fills),
            exchange_order_id=str(answer.get("orderId")),
            base_fee=base_fee,
        )
