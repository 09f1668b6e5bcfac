"""The exchange's rules for a symbol's orders: Binance's exchangeInfo filters.

A MARKET order passes `LOT_SIZE` (and `MARKET_LOT_SIZE` where it is set) when its quantity is
at least minQty, at most maxQty and a whole number of stepSize above minQty, and `NOTIONAL` (or
the older `MIN_NOTIONAL`, where it applies to market orders) when quantity x price reaches
minNotional (https://developers.binance.com/docs/binance-spot-api-docs/filters). The trader
rounds every quantity down to the step (python-binance's `round_step_size`) and does not send
an order these filters would refuse; it says which filter, with the figures.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

from binance.helpers import round_step_size

from klinecast.errors import KlinecastError

#: Quantities are rounded to this many decimals before they are rounded down to a step, so
#: that float noise (0.000999 held as 0.00099899999...) does not cost a whole step.
NOISE_DECIMALS = 12


class FiltersError(KlinecastError):
    """exchangeInfo does not describe the symbol as the trader needs it."""


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's assets and the filters its MARKET orders must pass."""

    symbol: str
    base_asset: str
    quote_asset: str
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    #: quantity x price must reach this (0: no minimum applies to market orders)
    min_notional: Decimal
    #: which filter sets min_notional (NOTIONAL or MIN_NOTIONAL), for the reason of a refusal
    notional_filter: str
    #: PRICE_FILTER's tick (limit prices keep to it; the trader sends market orders)
    tick: Decimal
    fetched_at: dt.datetime

    @classmethod
    def from_exchange_info(cls, info: dict, *, fetched_at: dt.datetime) -> SymbolRules:
        """The rules of one symbol of GET /api/v3/exchangeInfo's `symbols`.

        Raises:
            FiltersError: it has no LOT_SIZE filter, or a value is missing or not a number.
            KeyError: it is not a symbol's entry at all (no symbol, no filters).
        """
        symbol = info["symbol"]
        by_type = {f["filterType"]: f for f in info["filters"]}
        if "LOT_SIZE" not in by_type:
            raise FiltersError(f"exchangeInfo lists no LOT_SIZE filter for {symbol}")
        try:
            lot = by_type["LOT_SIZE"]
            step, low, high = (Decimal(lot[k]) for k in ("stepSize", "minQty", "maxQty"))
            if "MARKET_LOT_SIZE" in by_type:  # 0 disables a part (Binance lists a 0 step)
                market_lot = by_type["MARKET_LOT_SIZE"]
                step = max(step, Decimal(market_lot["stepSize"]))
                low = max(low, Decimal(market_lot["minQty"]))
                if Decimal(market_lot["maxQty"]) > 0:
                    high = min(high, Decimal(market_lot["maxQty"]))
            notional, which = Decimal(0), "NOTIONAL"
            if "NOTIONAL" in by_type and by_type["NOTIONAL"]["applyMinToMarket"]:
                notional = Decimal(by_type["NOTIONAL"]["minNotional"])
            elif "MIN_NOTIONAL" in by_type and by_type["MIN_NOTIONAL"]["applyToMarket"]:
                notional, which = Decimal(by_type["MIN_NOTIONAL"]["minNotional"]), "MIN_NOTIONAL"
            prices = by_type["PRICE_FILTER"] if "PRICE_FILTER" in by_type else {"tickSize": "0"}
            return cls(
                symbol, info["baseAsset"], info["quoteAsset"], step, low, high, notional, which,
                Decimal(prices["tickSize"]), fetched_at,
            )  # fmt: skip
        except (KeyError, ArithmeticError, ValueError) as exc:
            raise FiltersError(f"exchangeInfo's filters of {symbol} are unreadable: {exc!r}") from None

    @classmethod
    def unrestricted(cls, symbol: str, *, fetched_at: dt.datetime) -> SymbolRules:
        """No minimums and Binance's 8 decimals: the paper broker's rules."""
        tiny = Decimal("0.00000001")
        return cls(symbol, symbol, "", tiny, Decimal(0), Decimal(10**12), Decimal(0), "NOTIONAL",
                   tiny, fetched_at)  # fmt: skip

    def round_down(self, qty: float) -> float:
        """qty rounded toward zero to a whole number of steps (what an order may hold)."""
        clean = round(abs(qty), NOISE_DECIMALS)
        return float(round_step_size(clean, self.step))

    def text(self, qty: float) -> str:
        """qty as an order's quantity parameter: the step's decimals, no exponent."""
        places = max(-self.step.normalize().as_tuple().exponent, 0)
        return f"{qty:.{places}f}"

    def refusal(self, qty: float, *, price: float) -> str | None:
        """Why the exchange would refuse a MARKET order of qty (already a whole number of
        steps) at about price, or None."""
        base = self.base_asset
        if qty < float(self.min_qty):
            return f"{qty:g} {base} is below LOT_SIZE's minQty {self.min_qty.normalize()}"
        if qty > float(self.max_qty):
            return f"{qty:g} {base} is above LOT_SIZE's maxQty {self.max_qty.normalize()}"
        if qty * price < float(self.min_notional):
            return (
                f"{qty:g} {base} at {price:g} is worth {qty * price:.2f} {self.quote_asset}, "
                f"below {self.notional_filter}'s minNotional {self.min_notional.normalize()}"
            )
        return None

    def sellable(self, qty: float, *, price: float) -> bool:
        """Whether an order could move qty (either side), rounded down to the step."""
        rounded = self.round_down(qty)
        return rounded > 0 and self.refusal(rounded, price=price) is None

    def to_json(self) -> str:
        return json.dumps(
            {"symbol": self.symbol, "base": self.base_asset, "quote": self.quote_asset,
             "step": str(self.step), "min_qty": str(self.min_qty), "max_qty": str(self.max_qty),
             "min_notional": str(self.min_notional), "notional_filter": self.notional_filter,
             "tick": str(self.tick), "fetched_at": self.fetched_at.isoformat()}
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> SymbolRules:
        values = json.loads(text)
        return cls(
            values["symbol"], values["base"], values["quote"], Decimal(values["step"]),
            Decimal(values["min_qty"]), Decimal(values["max_qty"]),
            Decimal(values["min_notional"]), values["notional_filter"], Decimal(values["tick"]),
            dt.datetime.fromisoformat(values["fetched_at"]),
        )  # fmt: skip
