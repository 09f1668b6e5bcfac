"""The hourly cycle over historical hours: paper broker, simulated clock, the live model server."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from klinecast.config import Params, Span
from klinecast.data.market import ExchangeError
from klinecast.trader import shadow as shadow_book
from klinecast.trader.brokers import PaperBroker
from klinecast.trader.cycle import Trader, run_once, settle
from klinecast.trader.ledger import Ledger


def frame_market(candles: pd.DataFrame):
    """Market data from a candle history, as Binance would have answered at each hour."""

    def market(until: pd.Timestamp, count: int) -> pd.DataFrame:
        window = candles.loc[:until].iloc[-count:]
        if window.empty or window.index[-1] != until:
            raise ExchangeError(f"the candle history has no candle at {until}")
        return window

    return market


def replay(
    params: Params,
    *,
    candles: pd.DataFrame,
    start: dt.date,
    end: dt.date,
    ledger_url: str,
    predict,
    shadow=None,
) -> dict:
    """Runs the cycle for every candle hour in [start, end], asking the challenger too when
    shadow is given (the shadow book); settles the last one if possible."""
    ledger = Ledger(ledger_url)
    ledger.migrate()
    trader = Trader(
        params,
        ledger,
        PaperBroker.charging(params.backtest, engine=ledger.engine),
        frame_market(candles),
        predict,
        shadow,
    )
    span = Span(start, end)
    hours = candles.index[span.holds(candles.index)]
    results = [run_once(trader, hour=hour) for hour in hours]
    last = candles.loc[: span.stop].iloc[-params.features.min_history :]
    settle(ledger, last, params)
    shadow_book.settle(ledger, last, params)
    equity, hold = ledger.last_equity(params.data.symbol)
    shadowed = ledger.shadow_outcomes(params.data.symbol)
    return {
        "hours": len(results),
        "traded": sum(r.status == "traded" for r in results),
        "orders": sum(o.symbol == params.data.symbol for o in ledger.orders()),
        "equity": equity,
        "buy_and_hold": hold,
        # the newest challenger's shadow book: its version and equity (None without one)
        "shadow": (shadowed[-1]["version"], shadowed[-1]["equity"]) if shadowed else None,
    }
