"""The Binance stand-in keeps the rules Binance documents, as python-binance meets them: the
timing check of signed requests, the symbol filters, commissions in the asset received, orders
that stay open, and cancels. (The trader's tests rely on each of these.)"""

from __future__ import annotations

import time

import pytest
from binance.exceptions import BinanceAPIException

from klinecast.data import market
from tests.support.binance_server import API_KEY, API_SECRET, BinanceServer
from tests.support.candle_factory import synthetic_candles


@pytest.fixture()
def exchange():
    candles = synthetic_candles(48)
    candles[["open", "high", "low", "close"]] = 50_000.0  # 0.001 BTC is worth 50 USDT
    with BinanceServer(candles) as server:
        yield server


@pytest.fixture()
def client(exchange):
    return market.client(url=exchange.url, api_key=API_KEY, api_secret=API_SECRET)


def refused(call) -> tuple[int, str]:
    with pytest.raises(BinanceAPIException) as caught:
        call()
    return caught.value.code, caught.value.message


def buy(client, qty: str, *, cid: str = "c1") -> dict:
    return client.create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity=qty, newClientOrderId=cid
    )


def test_a_signed_request_outside_its_window_is_refused(exchange, client):
    exchange.clock_offset_ms = 6000  # the exchange's clock 6 s after the client's
    client.REQUEST_RECVWINDOW = 5000
    assert refused(client.get_account) == (
        -1021, "Timestamp for this request is outside of the recvWindow."
    )  # fmt: skip
    client.REQUEST_RECVWINDOW = 7000
    assert client.get_account()["canTrade"]
    exchange.clock_offset_ms = -1500  # the client 1.5 s ahead
    assert refused(client.get_account)[1].endswith("1000ms ahead of the server's time.")
    exchange.clock_offset_ms = 0
    client.REQUEST_RECVWINDOW = 60001
    assert refused(client.get_account) == (-1131, "recvWindow must be less than 60000.")


def test_an_order_that_reaches_the_engine_after_its_window_is_never_booked(exchange, client):
    client.REQUEST_RECVWINDOW = 300
    exchange.delay_order_s = 0.5
    assert refused(lambda: buy(client, "0.001"))[0] == -1021
    assert exchange.booked == [] and exchange.position() == 0
    exchange.delay_order_s = 0.1  # within the window: booked
    assert buy(client, "0.001", cid="c2")["status"] == "FILLED"


def test_filters_refuse_a_quantity_off_the_step_or_below_the_minimum_notional(exchange, client):
    assert refused(lambda: buy(client, "0.000001")) == (-1013, "Filter failure: LOT_SIZE")
    assert refused(lambda: buy(client, "0.0010005")) == (-1013, "Filter failure: LOT_SIZE")
    assert refused(lambda: buy(client, "0.00009")) == (-1013, "Filter failure: NOTIONAL")
    info = client.get_symbol_info("BTCUSDT")
    lot = next(f for f in info["filters"] if f["filterType"] == "LOT_SIZE")
    assert lot["stepSize"] == "0.00001000" and exchange.booked == []


def test_a_buys_commission_is_taken_in_the_base_asset(exchange, client):
    answer = buy(client, "0.001")
    (fill,) = answer["fills"]
    assert fill["commissionAsset"] == "BTC" and float(fill["commission"]) == pytest.approx(1e-6)
    assert exchange.position() == pytest.approx(0.000999, abs=1e-12)
    sold = client.create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.00099", newClientOrderId="c2"
    )
    assert sold["fills"][0]["commissionAsset"] == "USDT"
    assert exchange.position() == pytest.approx(0.000009, abs=1e-12)  # dust, below the step


def test_an_order_left_open_is_queried_without_fills_and_cancelled(exchange, client):
    exchange.leave_open = "PARTIALLY_FILLED"
    placed = buy(client, "0.001")
    assert placed["status"] == "PARTIALLY_FILLED" and placed["executedQty"] == "0.00050000"
    found = client.get_order(symbol="BTCUSDT", origClientOrderId="c1")
    assert found["status"] == "PARTIALLY_FILLED" and "fills" not in found
    (trade,) = client.get_my_trades(symbol="BTCUSDT", orderId=found["orderId"])
    assert trade["commissionAsset"] == "BTC" and float(trade["qty"]) == 0.0005
    cancelled = client.cancel_order(symbol="BTCUSDT", origClientOrderId="c1")
    assert cancelled["status"] == "CANCELED" and cancelled["executedQty"] == "0.00050000"
    assert refused(lambda: client.cancel_order(symbol="BTCUSDT", origClientOrderId="c1")) == (
        -2011, "Unknown order sent."
    )  # fmt: skip
    assert exchange.position() == pytest.approx(0.0005 - 0.0000005, abs=1e-12)


def test_the_exchange_clock_and_a_missing_order(exchange, client):
    served = client.get_server_time()["serverTime"]
    assert abs(served - time.time() * 1000) < 1000
    code, message = refused(lambda: client.get_order(symbol="BTCUSDT", origClientOrderId="x"))
    assert (code, message) == (-2013, "Order does not exist.")
    exchange.market_hour = exchange.candles.index[3]
    exchange.candles.loc[exchange.market_hour, "close"] = 40_000.0
    assert exchange.price("BTCUSDT") == 40_000.0  # orders fill at the close of that hour
