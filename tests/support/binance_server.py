"""A local HTTP endpoint speaking Binance's spot REST wire format, and keeping Binance's rules.

What it serves (as https://developers.binance.com/docs/binance-spot-api-docs/rest-api words it):
GET /api/v3/klines over a candle frame per symbol; GET /api/v3/time; GET /api/v3/exchangeInfo
(all symbols, or `?symbol=`) with each symbol's PRICE_FILTER, LOT_SIZE and NOTIONAL (or the
older MIN_NOTIONAL) filters; and, signed (API key header, HMAC-SHA256 signature): POST, GET and
DELETE /api/v3/order, GET /api/v3/myTrades and GET /api/v3/account. Errors are Binance's bodies
({"code": -1013, "msg": "Filter failure: LOT_SIZE"}).

The rules it keeps:

- **Timing security.** A signed request is refused (-1021) unless `timestamp < serverTime + 1 s`
  and `serverTime - timestamp <= recvWindow` (5000 ms when not sent; over 60000 is -1131) on
  receipt, and an order is checked again just before it reaches the matching engine (the check
  Binance added on 2025-06-06): an order that lands after its window is refused, never booked.
- **Filters.** A MARKET order's quantity must keep LOT_SIZE (minQty <= qty <= maxQty, qty a
  multiple of stepSize from minQty) and its notional at the current price the NOTIONAL /
  MIN_NOTIONAL minimum (-1013 "Filter failure: ..."); the account must hold what it sells or
  pays (-2010).
- **Commission** `fee_rate` of each trade, in the asset received (Binance's default without
  BNB): a BUY's in the base asset, so buying 0.001 BTC leaves 0.000999 in the account; a SELL's
  in the quote asset.
- **Order states.** Orders fill at once (FILLED), or with `leave_open` they stay NEW (or
  PARTIALLY_FILLED, part of them executed) until `fill_open()`, `expire_open()` or a cancel
  (DELETE: CANCELED, the executed part kept); an open SELL locks its base asset. A query of an
  order (GET) has no `fills`; its commissions are in myTrades.
- **Client order ids.** A newClientOrderId is refused while an order with it is open, and
  accepted again once that order is done (a market order fills at once), which books a second
  order. `reuse_ids=False` refuses every reused id instead; tests run both.

Faults: `fail_next` 5xx answers to any request and `fail_paths` to one ("POST /api/v3/order"),
before anything is done; `delay_s` on every answer; `delay_order_s` before an order reaches the
matching engine, or `late_landings` for the next orders one by one (it lands late: the client
may have timed out, and the recvWindow check then decides; `arrivals` counts the orders that
reached the engine, booked or refused);
`clock_offset_ms` moves the exchange's clock against the client's; `refuse_orders` (a code and
a message for each of the next orders); `insufficient_balance`; `refuse_cancels` (the next
cancels answered 429, Binance's rate limit, which a client does not retry); and after an
order is booked: `hang_after_order_s` (the answer is held back), `fail_after_booking` (a 5xx),
`html_after_booking` (a 200 with an HTML page, as a proxy might send); and
`fill_before_next_account` (open orders fill between a client's lookup and its balance read).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from tests.support.local_http import JsonHandler, LocalServer

API_KEY, API_SECRET = "test-key", "test-secret"
#: Binance's default recvWindow when a request sends none, and the largest it accepts.
DEFAULT_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS = 5000.0, 60000.0
#: How far ahead of the exchange's clock a request's timestamp may be.
AHEAD_MS = 1000
INTERNAL = "Internal error; unable to process your request. Please try again."
RATE_LIMITED = "Too many requests; current limit is 6000 request weight per 1 MINUTE."


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's filters as exchangeInfo lists them (strings, as Binance sends them)."""

    base: str
    quote: str = "USDT"
    step: str = "0.00001000"
    min_qty: str = "0.00001000"
    max_qty: str = "9000.00000000"
    tick: str = "0.01000000"
    min_notional: str = "5.00000000"
    #: NOTIONAL (Binance's current filter) or MIN_NOTIONAL (the older one some symbols keep)
    notional_filter: str = "NOTIONAL"

    def filters(self) -> list[dict]:
        notional = (
            {"filterType": "NOTIONAL", "minNotional": self.min_notional, "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}
            if self.notional_filter == "NOTIONAL"
            else {"filterType": "MIN_NOTIONAL", "minNotional": self.min_notional,
                  "applyToMarket": True, "avgPriceMins": 5}
        )  # fmt: skip
        return [
            {"filterType": "PRICE_FILTER", "minPrice": self.tick, "maxPrice": "1000000.00000000",
             "tickSize": self.tick},
            {"filterType": "LOT_SIZE", "minQty": self.min_qty, "maxQty": self.max_qty,
             "stepSize": self.step},
            notional,
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": self.max_qty,
             "stepSize": "0.00000000"},
        ]  # fmt: skip


#: The five symbols' filters, of the sizes Binance's spot market lists for them (the step of
#: the base asset, a 5 USDT minimum notional); BNBUSDT keeps the older MIN_NOTIONAL filter.
RULES = {
    "BTCUSDT": SymbolRules("BTC"),
    "ETHUSDT": SymbolRules("ETH", step="0.00010000", min_qty="0.00010000"),
    "BNBUSDT": SymbolRules("BNB", step="0.00100000", min_qty="0.00100000", tick="0.10000000",
                           min_notional="10.00000000", notional_filter="MIN_NOTIONAL"),
    "SOLUSDT": SymbolRules("SOL", step="0.00100000", min_qty="0.00100000"),
    "XRPUSDT": SymbolRules("XRP", step="1.00000000", min_qty="1.00000000", tick="0.00010000"),
}  # fmt: skip
#: What the account holds at the start: coins of its own beside the trader's positions.
START_BALANCES = {"USDT": 1_000_000.0, "BTC": 1.0, "ETH": 10.0, "BNB": 50.0, "SOL": 300.0,
                  "XRP": 50_000.0}  # fmt: skip
OPEN = ("NEW", "PARTIALLY_FILLED")


class BinanceServer(LocalServer):
    def __init__(self, candles: pd.DataFrame | dict[str, pd.DataFrame]):
        #: symbol -> its candles; one frame serves every symbol (the tests' BTCUSDT history)
        self.candles = candles
        self.rules = dict(RULES)
        self.orders: dict[str, dict] = {}  # clientOrderId -> its newest order
        self.booked: list[dict] = []  # every order booked, in order
        self.trades: list[dict] = []
        self.refused: list[tuple[str, int, str]] = []  # (clientOrderId, code, msg) of refusals
        self.balances = dict(START_BALANCES)
        self.locked = dict.fromkeys(START_BALANCES, 0.0)
        self.fee_rate = 0.001
        #: the hour whose candle closed last: orders fill at its close (None: the newest candle)
        self.market_hour: pd.Timestamp | None = None
        self.reuse_ids = True
        self.leave_open: str | None = None  # None (fill at once) | NEW | PARTIALLY_FILLED
        self.partial_share = 0.5  # of a PARTIALLY_FILLED order's quantity, rounded to the step
        #: open orders fill just before the next account read is answered (between a client's
        #: lookup of them and its read of the balance)
        self.fill_before_next_account = False
        self.clock_offset_ms = 0.0
        self.fail_paths: dict[str, int] = {}
        self.refuse_orders: list[tuple[int, str]] = []
        self.refuse_cancels = 0
        self.fail_after_booking = 0
        self.delay_order_s = 0.0
        self.late_landings: list[float] = []
        self.arrivals = 0
        #: symbol -> the largest |exposure| (holding against the start, open orders included)
        #: the account has had after any order was booked, executed or ended
        self.peak: dict[str, float] = {}
        self.html_after_booking = 0
        self.calls: list[tuple[str, str]] = []
        self.fail_next = 0
        self.fail_status = 503
        self.delay_s = 0.0
        self.insufficient_balance = False
        self.hang_after_order_s = 0.0
        self.lock = threading.RLock()
        super().__init__(self._handler(), quiet_errors=True)

    @property
    def url(self) -> str:
        return f"{super().url}/api"

    # the market
    def server_time_ms(self) -> float:
        return time.time() * 1000 + self.clock_offset_ms

    def frame(self, symbol: str) -> pd.DataFrame:
        return self.candles[symbol] if isinstance(self.candles, dict) else self.candles

    def price(self, symbol: str) -> float:
        frame = self.frame(symbol)
        if self.market_hour is not None:
            frame = frame.loc[: self.market_hour]
        return float(frame["close"].iloc[-1])

    def last_price(self) -> float:
        return self.price("BTCUSDT")

    def klines(self, query: dict) -> list[list]:
        frame = self.frame(query.get("symbol", "BTCUSDT"))
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

    def exchange_info(self, symbol: str | None = None) -> dict:
        listed = {s: r for s, r in self.rules.items() if symbol is None or s == symbol}
        return {
            "timezone": "UTC",
            "serverTime": int(self.server_time_ms()),
            "symbols": [
                {"symbol": name, "status": "TRADING", "baseAsset": rules.base,
                 "baseAssetPrecision": 8, "quoteAsset": rules.quote, "quoteAssetPrecision": 8,
                 "orderTypes": ["LIMIT", "MARKET"], "filters": rules.filters()}
                for name, rules in listed.items()
            ],
        }  # fmt: skip

    # the account
    def order_posts(self) -> int:
        return sum(1 for method, path in self.calls if (method, path) == ("POST", "/api/v3/order"))

    def signed_booked(self) -> float:
        """The net quantity of every order booked, as executed (before commissions)."""
        return round(sum(float(o["executedQty"]) * (1 if o["side"] == "BUY" else -1)
                         for o in self.booked), 8)  # fmt: skip

    def holding(self, asset: str = "BTC") -> float:
        """Free and locked: what the account holds of the asset."""
        return self.balances[asset] + self.locked[asset]

    def position(self, start: float | None = None, *, asset: str = "BTC") -> float:
        """The account's holding of the asset against what it held at the start."""
        return round(self.holding(asset) - (START_BALANCES[asset] if start is None else start), 8)

    def exposure(self, symbol: str = "BTCUSDT") -> float:
        """The position, and every open order's unexecuted quantity on top (signed)."""
        base = self.rules[symbol].base
        open_orders = sum(
            (float(o["origQty"]) - float(o["executedQty"])) * (1 if o["side"] == "BUY" else -1)
            for o in self.orders.values()
            if o["symbol"] == symbol and o["status"] in OPEN
        )
        return round(self.position(asset=base) + open_orders, 8)

    def _track(self, symbol: str) -> None:
        peak = max(abs(self.exposure(symbol)), abs(self.position(asset=self.rules[symbol].base)))
        self.peak[symbol] = max(self.peak.get(symbol, 0.0), peak)

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders.values() if o["status"] in OPEN]

    def account(self) -> dict:
        return {
            "canTrade": True,
            "balances": [
                {"asset": asset, "free": f"{amount:.8f}", "locked": f"{self.locked[asset]:.8f}"}
                for asset, amount in self.balances.items()
            ],
        }

    # orders
    def refusal(self, symbol: str, side: str, quantity: str) -> tuple[int, str] | None:
        """Binance's refusal of a MARKET order (its code and message), or None."""
        if symbol not in self.rules:
            return -1121, "Invalid symbol."
        rules, qty = self.rules[symbol], Decimal(quantity)
        step, low = Decimal(rules.step), Decimal(rules.min_qty)
        if qty < low or qty > Decimal(rules.max_qty) or (qty - low) % step != 0:
            return -1013, "Filter failure: LOT_SIZE"
        if float(qty) * self.price(symbol) < float(rules.min_notional):
            return -1013, f"Filter failure: {rules.notional_filter}"
        if self.insufficient_balance or not self._affordable(symbol, side, float(qty)):
            return -2010, "Account has insufficient balance for requested action."
        return None

    def _affordable(self, symbol: str, side: str, qty: float) -> bool:
        rules = self.rules[symbol]
        if side == "SELL":
            return self.balances[rules.base] >= qty - 1e-12
        return self.balances[rules.quote] >= qty * self.price(symbol) * (1 + self.fee_rate)

    def book(self, query: dict) -> dict:
        """A new MARKET order at the matching engine: filled at once, or left open."""
        symbol, side, qty = query["symbol"], query["side"], float(query["quantity"])
        now = int(self.server_time_ms())
        order = {
            "symbol": symbol, "orderId": len(self.booked) + 1, "orderListId": -1,
            "clientOrderId": query["newClientOrderId"], "transactTime": now,
            "price": "0.00000000", "origQty": f"{qty:.8f}", "executedQty": "0.00000000",
            "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": "0.00000000",
            "status": "NEW", "timeInForce": "GTC", "type": "MARKET", "side": side,
            "workingTime": now, "selfTradePreventionMode": "EXPIRE_MAKER", "time": now,
            "updateTime": now, "isWorking": True,
        }  # fmt: skip
        self.orders[order["clientOrderId"]] = order
        self.booked.append(order)
        if side == "SELL":  # an open SELL holds its quantity until it executes or ends
            base = self.rules[symbol].base
            self.balances[base] -= qty
            self.locked[base] += qty
        if self.leave_open is None:
            self.execute(order, qty)
        elif self.leave_open == "PARTIALLY_FILLED":
            step = Decimal(self.rules[symbol].step)
            part = (Decimal(f"{qty * self.partial_share:.8f}") // step) * step
            self.execute(order, float(part))
        self._track(symbol)
        return order

    def execute(self, order: dict, qty: float) -> list[dict]:
        """qty more of the order executed at the current price; the commission is taken from
        what the account receives. Returns the fills."""
        if qty <= 0:
            return []
        rules = self.rules[order["symbol"]]
        price = self.price(order["symbol"])
        quote = qty * price
        if order["side"] == "BUY":
            commission, asset = qty * self.fee_rate, rules.base
            self.balances[rules.base] += qty - commission
            self.balances[rules.quote] -= quote
        else:
            commission, asset = quote * self.fee_rate, rules.quote
            self.locked[rules.base] -= qty
            self.balances[rules.quote] += quote - commission
        executed = float(order["executedQty"]) + qty
        order["executedQty"] = f"{executed:.8f}"
        order["cummulativeQuoteQty"] = f"{float(order['cummulativeQuoteQty']) + quote:.8f}"
        order["status"] = (
            "FILLED" if executed >= float(order["origQty"]) - 1e-12 else "PARTIALLY_FILLED"
        )
        order["updateTime"] = int(self.server_time_ms())
        fill = {"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": f"{commission:.8f}",
                "commissionAsset": asset, "tradeId": len(self.trades) + 1}  # fmt: skip
        self.trades.append(
            {"symbol": order["symbol"], "id": fill["tradeId"], "orderId": order["orderId"],
             "orderListId": -1, "price": fill["price"], "qty": fill["qty"],
             "quoteQty": f"{quote:.8f}", "commission": fill["commission"],
             "commissionAsset": asset, "time": order["updateTime"],
             "isBuyer": order["side"] == "BUY", "isMaker": False, "isBestMatch": True}
        )  # fmt: skip
        order.setdefault("_fills", []).append(fill)
        self._track(order["symbol"])
        return [fill]

    def end(self, order: dict, status: str) -> None:
        """An open order ends (CANCELED, EXPIRED): an open SELL's unexecuted part is freed."""
        if order["side"] == "SELL":
            base = self.rules[order["symbol"]].base
            rest = float(order["origQty"]) - float(order["executedQty"])
            self.locked[base] -= rest
            self.balances[base] += rest
        order["status"] = status
        order["updateTime"] = int(self.server_time_ms())

    def fill_open(self) -> int:
        """Every open order executes what is left of it; returns how many."""
        with self.lock:
            still = self.open_orders()
            for order in still:
                self.execute(order, float(order["origQty"]) - float(order["executedQty"]))
            return len(still)

    def expire_open(self) -> int:
        with self.lock:
            still = self.open_orders()
            for order in still:
                self.end(order, "EXPIRED")
            return len(still)

    @staticmethod
    def answer(order: dict, *, fills: bool) -> dict:
        """The order as an answer shows it: a new order's with its fills, a query's without."""
        shown = {k: v for k, v in order.items() if not k.startswith("_")}
        if fills:
            shown["fills"] = order.get("_fills", [])
            for key in ("time", "updateTime", "isWorking"):
                shown.pop(key, None)
        return shown

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def _error(self, status: int, code: int, msg: str) -> None:
                self._send(status, {"code": code, "msg": msg})

            def _signed(self, payload: str) -> dict | None:
                """The request's parameters once its key, signature and timing pass."""
                if self.headers.get("X-MBX-APIKEY") != API_KEY:
                    self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
                    return None
                unsigned, _, signature = payload.rpartition("&signature=")
                expected = hmac.new(API_SECRET.encode(), unsigned.encode(), hashlib.sha256)
                if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
                    self._error(400, -1022, "Signature for this request is not valid.")
                    return None
                query = dict(parse_qsl(unsigned))
                window = float(query.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
                if window > MAX_RECV_WINDOW_MS:
                    self._error(400, -1131, "recvWindow must be less than 60000.")
                    return None
                timing = self._untimely(query, window)
                if timing:
                    self._error(400, -1021, timing)
                    return None
                return query

            @staticmethod
            def _untimely(query: dict, window: float) -> str | None:
                """Binance's timing check of a signed request, now."""
                stamp, now = float(query.get("timestamp", 0)), server.server_time_ms()
                if stamp >= now + AHEAD_MS:
                    return "Timestamp for this request was 1000ms ahead of the server's time."
                if now - stamp > window:
                    return "Timestamp for this request is outside of the recvWindow."
                return None

            def _faulty(self, path: str) -> bool:
                time.sleep(server.delay_s)
                call = f"{self.command} {path}"
                with server.lock:
                    if server.fail_next > 0:
                        server.fail_next -= 1
                    elif server.fail_paths.get(call, 0) > 0:
                        server.fail_paths[call] -= 1
                    else:
                        return False
                self._error(server.fail_status, -1001, INTERNAL)
                return True

            def do_GET(self):
                parts = urlsplit(self.path)
                server.calls.append(("GET", parts.path))
                if self._faulty(parts.path):
                    return
                query = dict(parse_qsl(parts.query))
                if parts.path == "/api/v3/klines":
                    return self._send(200, server.klines(query))
                if parts.path == "/api/v3/time":
                    return self._send(200, {"serverTime": int(server.server_time_ms())})
                if parts.path == "/api/v3/exchangeInfo":
                    return self._send(200, server.exchange_info(query.get("symbol")))
                if parts.path not in ("/api/v3/account", "/api/v3/order", "/api/v3/myTrades"):
                    return self._error(404, -1000, f"unknown path {parts.path}")
                query = self._signed(parts.query)
                if query is None:
                    return
                with server.lock:
                    if parts.path == "/api/v3/account":
                        if server.fill_before_next_account:
                            server.fill_before_next_account = False
                            server.fill_open()
                        return self._send(200, server.account())
                    if parts.path == "/api/v3/myTrades":
                        trades = [
                            t for t in server.trades
                            if t["symbol"] == query.get("symbol")
                            and ("orderId" not in query or t["orderId"] == int(query["orderId"]))
                        ]  # fmt: skip
                        return self._send(200, trades)
                    order = server.orders.get(query.get("origClientOrderId", ""))
                    if order is None or order["symbol"] != query.get("symbol"):
                        return self._error(400, -2013, "Order does not exist.")
                    return self._send(200, server.answer(order, fills=False))

            def _body(self) -> str:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length).decode()

            def _order_request(self, method: str) -> dict | None:
                """A signed request to /api/v3/order, its parameters read from the body (or
                the query string); None once a fault, an unknown path or a bad signature has
                been answered."""
                parts = urlsplit(self.path)
                body = self._body() or (parts.query if method == "DELETE" else "")
                server.calls.append((method, parts.path))
                if self._faulty(parts.path):
                    return None
                if parts.path != "/api/v3/order":
                    self._error(404, -1000, f"unknown path {parts.path}")
                    return None
                return self._signed(body)

            def do_DELETE(self):
                query = self._order_request("DELETE")
                if query is None:
                    return
                with server.lock:
                    if server.refuse_cancels > 0:
                        server.refuse_cancels -= 1
                        return self._error(429, -1003, RATE_LIMITED)
                    order = server.orders.get(query.get("origClientOrderId", ""))
                    if order is None or order["status"] not in OPEN:
                        return self._error(400, -2011, "Unknown order sent.")
                    server.end(order, "CANCELED")
                    answer = server.answer(order, fills=False)
                answer["origClientOrderId"] = answer["clientOrderId"]
                self._send(200, answer)

            def do_POST(self):
                query = self._order_request("POST")
                if query is None:
                    return
                with server.lock:
                    late = server.late_landings.pop(0) if server.late_landings else None
                time.sleep(server.delay_order_s if late is None else late)  # to the engine
                window = float(query.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
                with server.lock:
                    server.arrivals += 1
                    client_id = query["newClientOrderId"]
                    refusal = self._refusal(query, window)
                    if refusal is not None:
                        server.refused.append((client_id, *refusal))
                        return self._error(400, *refusal)
                    order = server.book(query)
                    answer = server.answer(order, fills=True)
                time.sleep(server.hang_after_order_s)
                if server.fail_after_booking > 0:
                    server.fail_after_booking -= 1
                    return self._error(502, -1001, INTERNAL)
                if server.html_after_booking > 0:
                    server.html_after_booking -= 1
                    page = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    return self.wfile.write(page)
                self._send(200, answer)

            def _refusal(self, query: dict, window: float) -> tuple[int, str] | None:
                if server.server_time_ms() - float(query["timestamp"]) > window:
                    return -1021, "Timestamp for this request is outside of the recvWindow."
                earlier = server.orders.get(query["newClientOrderId"])
                if earlier is not None and (not server.reuse_ids or earlier["status"] in OPEN):
                    return -2010, "Duplicate order sent."
                if server.refuse_orders:
                    return server.refuse_orders.pop(0)
                if query.get("type") != "MARKET":
                    return -1013, "Only MARKET orders here."
                return server.refusal(query["symbol"], query["side"], query["quantity"])

        return Handler
