"""A symbol's order filters read from exchangeInfo as Binance writes it, and applied."""

import datetime as dt
from decimal import Decimal

import pytest

from klinecast.trader.filters import FiltersError, SymbolRules

NOW = dt.datetime(2021, 12, 1, tzinfo=dt.UTC)


def info(*filters: dict, symbol: str = "BTCUSDT") -> dict:
    return {"symbol": symbol, "baseAsset": "BTC", "quoteAsset": "USDT", "filters": list(filters)}


LOT = {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
       "stepSize": "0.00001000"}  # fmt: skip
NOTIONAL = {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
            "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}  # fmt: skip


def test_lot_size_and_notional_are_read_and_applied():
    rules = SymbolRules.from_exchange_info(info(LOT, NOTIONAL), fetched_at=NOW)
    assert (rules.step, rules.min_notional, rules.notional_filter) == (
        Decimal("0.00001"), Decimal(5), "NOTIONAL"
    )  # fmt: skip
    assert rules.round_down(0.0009989999999999721) == 0.00099  # float noise costs no step
    assert rules.round_down(0.000999) == 0.00099 and rules.round_down(-0.0012345) == 0.00123
    assert rules.text(0.00099) == "0.00099"
    assert rules.refusal(0.00099, price=50_000.0) is None
    assert rules.refusal(0.0, price=50_000.0) == "0 BTC is below LOT_SIZE's minQty 0.00001"
    assert rules.refusal(0.00009, price=50_000.0) == (
        "9e-05 BTC at 50000 is worth 4.50 USDT, below NOTIONAL's minNotional 5"
    )  # fmt: skip
    assert not rules.sellable(0.000009, price=50_000.0)  # dust
    assert SymbolRules.from_json(rules.to_json()) == rules


def test_the_older_min_notional_and_a_market_lot_size_apply_to_market_orders():
    older = {"filterType": "MIN_NOTIONAL", "minNotional": "10.0", "applyToMarket": True,
             "avgPriceMins": 5}  # fmt: skip
    market = {"filterType": "MARKET_LOT_SIZE", "minQty": "0.0001", "maxQty": "100",
              "stepSize": "0"}  # fmt: skip
    rules = SymbolRules.from_exchange_info(info(LOT, older, market), fetched_at=NOW)
    assert (rules.min_notional, rules.notional_filter) == (Decimal(10), "MIN_NOTIONAL")
    assert (rules.min_qty, rules.max_qty, rules.step) == (
        Decimal("0.0001"), Decimal(100), Decimal("0.00001")
    )  # fmt: skip
    not_market = dict(NOTIONAL, applyMinToMarket=False)
    assert SymbolRules.from_exchange_info(info(LOT, not_market), fetched_at=NOW).min_notional == 0


def test_a_symbol_without_lot_size_or_with_an_unreadable_filter_is_refused():
    with pytest.raises(FiltersError, match="no LOT_SIZE filter for BTCUSDT"):
        SymbolRules.from_exchange_info(info(NOTIONAL), fetched_at=NOW)
    with pytest.raises(FiltersError, match="filters of BTCUSDT are unreadable"):
        SymbolRules.from_exchange_info(info(dict(LOT, stepSize="a step")), fetched_at=NOW)
