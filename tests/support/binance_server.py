"""A local HTTP endpoint speaking Binance's spot REST wire format (what the trader uses).

GET /api/v3/klines honours symbol, interval, startTime, endTime and limit over a candle frame;
GET /api/v3/exchangeInfo lists the symbols with their base and quote assets; signed POST
/api/v3/order, GET /api/v3/order (by origClientOrderId) and GET /api/v3/account check the API
key header and the HMAC-SHA256 signature; errors are Binance's bodies ({"code": -2010, ...}).
A filled market order moves the account's balances (the fee is taken in the quote asset).

Client order ids follow Binance's documented rule: a newClientOrderId is refused while an order
with it is open, and accepted again once that order is filled (a market order fills at once),
which books a second order. `reuse_ids=False` refuses every reused id instead (the stricter
behaviour an earlier stand-in had); tests run both.

Faults: `fail_next` 5xx answers before anything is done, `delay_s` on every answer,
`delay_order_s` before an order is booked,
`insufficient_balance`, and after an order is booked: `hang_after_order_s` (the answer is held
back: a client killed or timed out meanwhile never hears of it), `fail_after_booking` (a 5xx
answer), `html_after_booking` (a 200 with an HTML page, as a proxy might send).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from tests.support.local_http import JsonHandler, LocalServer

API_KEY, API_SECRET = "test-key", "test-secret"


class BinanceServer(LocalServer):
    def __init__(self, candles: pd.DataFrame):
        self.candles = candles
        self.orders: dict[str, dict] = {}  # clientOrderId -> its newest order
        self.booked: list[dict] = []  # every order booked, in order
        self.balances = {"BTC": 1.0, "USDT": 1_000_000.0}
        self.reuse_ids = True
        self.fail_after_booking = 0
        self.delay_order_s = 0.0  # an order POST waits this long before it is booked
        self.html_after_booking = 0
        self.calls: list[tuple[str, str]] = []
        self.fail_next = 0
        self.fail_status = 503
        self.delay_s = 0.0
        self.insufficient_balance = False
        self.hang_after_order_s = 0.0
        super().__init__(self._handler(), quiet_errors=True)

    @property
    def url(self) -> str:
        return f"{super().url}/api"

    def order_posts(self) -> int:
        return sum(1 for method, path in self.calls if (method, path) == ("POST", "/api/v3/order"))

    def signed_booked(self) -> float:
        """The net quantity of every order booked (what the account's BTC moved by)."""
        return round(sum(float(o["executedQty"]) * (1 if o["side"] == "BUY" else -1)
                         for o in self.booked), 8)  # fmt: skip

    def klines(self, query: dict) -> list[list]:
        frame = self.candles
        if "startTime" in query:
            frame = frame[frame.index >= pd.Timestamp(int(query["startTime"]), unit="ms", tz="UTC")]
        if "endTime" in query:
            frame = frame[frame.index <= pd.Timestamp(int(query["endTime"]), unit="ms", tz="UTC")]
        frame = frame.iloc[: min(int(query.get("limit", 500)), 1000)]
        rows = []
        for stamp, c in zip(frame.index, frame.itertuples(index=False), strict=True):
            open_ms = int(stamp.timestamp() * 1000)
            rows.append(
                [
                    open_ms, f"{c.open:.8f}", f"{c.high:.8f}", f"{c.low:.8f}", f"{c.close:.8f}",
                    f"{c.volume:.8f}", open_ms + 3_599_999, f"{c.quote_volume:.8f}", int(c.trades),
                    f"{c.taker_buy_volume:.8f}", f"{c.taker_buy_quote_volume:.8f}", "0",
                ]
            )  # fmt: skip
        return rows

    def last_price(self) -> float:
        return float(self.candles["close"].iloc[-1])

    def position(self, start: float = 1.0) -> float:
        """The account's BTC against what it held at the start."""
        return round(self.balances["BTC"] - start, 8)

    def exchange_info(self) -> dict:
        return {
            "timezone": "UTC",
            "symbols": [
                {"symbol": f"{base}USDT", "status": "TRADING", "baseAsset": base,
                 "quoteAsset": "USDT", "orderTypes": ["MARKET"]}
                for base in ("BTC", "ETH", "BNB", "SOL", "XRP")
            ],
        }  # fmt: skip

    def account(self) -> dict:
        return {
            "canTrade": True,
            "balances": [
                {"asset": asset, "free": f"{amount:.8f}", "locked": "0.00000000"}
                for asset, amount in self.balances.items()
            ],
        }

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def _error(self, status: int, code: int, msg: str) -> None:
                self._send(status, {"code": code, "msg": msg})

            def _signed(self, payload: str) -> dict | None:
                if self.headers.get("X-MBX-APIKEY") != API_KEY:
                    self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
                    return None
                unsigned, _, signature = payload.rpartition("&signature=")
                expected = hmac.new(API_SECRET.encode(), unsigned.encode(), hashlib.sha256)
                if not hmac.compare_digest(expected.hexdigest(), signature):
                    self._error(400, -1022, "Signature for this request is not valid.")
                    return None
                return dict(parse_qsl(unsigned))

            def _faulty(self) -> bool:
                time.sleep(server.delay_s)
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self._error(server.fail_status, -1001, "Internal error; unable to process.")
                    return True
                return False

            def do_GET(self):
                parts = urlsplit(self.path)
                server.calls.append(("GET", parts.path))
                if self._faulty():
                    return
                if parts.path == "/api/v3/klines":
                    return self._send(200, server.klines(dict(parse_qsl(parts.query))))
                if parts.path == "/api/v3/exchangeInfo":
                    return self._send(200, server.exchange_info())
                if parts.path == "/api/v3/account":
                    if self._signed(parts.query) is None:
                        return
                    return self._send(200, server.account())
                if parts.path == "/api/v3/order":
                    query = self._signed(parts.query)
                    if query is None:
                        return
                    order = server.orders.get(query.get("origClientOrderId", ""))
                    if order is None:
                        return self._error(400, -2013, "Order does not exist.")
                    return self._send(200, order)
                self._error(404, -1000, f"unknown path {parts.path}")

            def do_POST(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                server.calls.append(("POST", parts.path))
                if self._faulty():
                    return
                if parts.path != "/api/v3/order":
                    return self._error(404, -1000, f"unknown path {parts.path}")
                query = self._signed(body)
                if query is None:
                    return
                if server.insufficient_balance:
                    msg = "Account has insufficient balance for requested action."
                    return self._error(400, -2010, msg)
                time.sleep(server.delay_order_s)
                client_id = query["newClientOrderId"]
                earlier = server.orders.get(client_id)
                if earlier is not None and (not server.reuse_ids or earlier["status"] != "FILLED"):
                    return self._error(400, -2010, "Duplicate order sent.")
                qty, price = float(query["quantity"]), server.last_price()
                order = {
                    "symbol": query["symbol"], "orderId": len(server.booked) + 1,
                    "clientOrderId": client_id, "transactTime": int(time.time() * 1000),
                    "price": "0.00000000", "origQty": f"{qty:.8f}", "executedQty": f"{qty:.8f}",
                    "cummulativeQuoteQty": f"{qty * price:.8f}", "status": "FILLED",
                    "type": "MARKET", "side": query["side"],
                    "fills": [{"price": f"{price:.8f}", "qty": f"{qty:.8f}",
                               "commission": f"{qty * price * 0.001:.8f}",
                               "commissionAsset": "USDT"}],
                }  # fmt: skip
                server.orders[client_id] = order
                server.booked.append(order)
                sign = 1 if query["side"] == "BUY" else -1
                server.balances["BTC"] += sign * qty
                server.balances["USDT"] -= sign * qty * price + qty * price * 0.001
                time.sleep(server.hang_after_order_s)
                if server.fail_after_booking > 0:
                    server.fail_after_booking -= 1
                    return self._error(502, -1001, "Internal error; unable to process.")
                if server.html_after_booking > 0:
                    server.html_after_booking -= 1
                    page = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    return self.wfile.write(page)
                self._send(200, order)

        return Handler
