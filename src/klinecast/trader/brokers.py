"""Brokers behind one interface: Binance spot testnet (python-binance) and a paper broker.

Every order carries a deterministic client order id (symbol, hour, leg), so the exchange itself
remembers whether an hour's order was sent: `find` asks it, and a rerun never sends twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

from klinecast.data import market
from klinecast.retries import RetrySettings
from klinecast.trader.ledger import Order


def client_order_id(symbol: str, hour: dt.datetime, leg: str) -> str:
    """Binance allows 36 characters of [.A-Z:/a-z0-9_-]: kc-BTCUSDT-2021120113-open."""
    return f"kc-{symbol}-{hour:%Y%m%d%H}-{leg}"


class Broker(Protocol):
    def find(self, order: Order) -> Order | None:
        """The order as filled on the exchange, or None if it was never sent."""

    def place(self, order: Order, *, price: float) -> Order:
        """Sends a market order; returns it filled (price, fee, exchange id)."""


class PaperBroker:
    """Fills at the candle's close with the fee from params; its book is the ledger's orders."""

    def __init__(self, *, fee: float, ledger):
        self.fee = fee
        self.ledger = ledger

    def find(self, order: Order) -> Order | None:
        known = self.ledger.order(order.client_order_id)
        return known if known is not None and known.status == "filled" else None

    def place(self, order: Order, *, price: float) -> Order:
        return dataclasses.replace(
            order,
            status="filled",
            fill_price=price,
            fee=abs(order.qty) * price * self.fee,
            exchange_order_id=f"paper-{order.client_order_id}",
        )


class BinanceTestnetBroker:
    """Market orders on the Binance spot testnet; keys come from the environment only."""

    def __init__(self, binance, *, retry: RetrySettings = market.EXCHANGE_RETRY):
        self.binance = binance
        self.retry = retry

    def find(self, order: Order) -> Order | None:
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
        return self._filled(order, found)

    def place(self, order: Order, *, price: float) -> Order:
        sent = market.call(
            f"POST /api/v3/order {order.client_order_id}",
            lambda: self.binance.create_order(
                symbol=order.symbol,
                side=order.side,
                type="MARKET",
                quantity=f"{order.qty:.8f}".rstrip("0").rstrip("."),
                newClientOrderId=order.client_order_id,
                newOrderRespType="FULL",
            ),
            retry=self.retry,
        )
        return self._filled(order, sent)

    @staticmethod
    def _filled(order: Order, answer: dict) -> Order:
        fills = answer.get("fills") or []
        qty = float(answer.get("executedQty") or 0.0)
        quote = float(answer.get("cummulativeQuoteQty") or 0.0)
        return dataclasses.replace(
            order,
            status="filled" if answer.get("status") == "FILLED" else answer.get("status", "?"),
            fill_price=quote / qty if qty else None,
            fee=sum(float(f.get("commission", 0.0)) for f in fills),
            exchange_order_id=str(answer.get("orderId")),
        )
