"""The trader as the hourly CronJob runs it, assembled from params: the ledger, the broker
(paper, or Binance spot testnet with keys from the environment), Binance's closed candles and
the InferenceService."""

from __future__ import annotations

import dataclasses
import os

from klinecast.config import Params
from klinecast.data import market
from klinecast.errors import KlinecastError
from klinecast.serving.client import predict
from klinecast.trader.brokers import BinanceTestnetBroker, PaperBroker
from klinecast.trader.cycle import Trader
from klinecast.trader.ledger import Ledger

#: Where the testnet keys come from (on the cluster, the Binance Secret's keys).
KEY_ENV, SECRET_ENV = "BINANCE_API_KEY", "BINANCE_API_SECRET"


def book(params: Params) -> dict[str, Trader]:
    """A trader per symbol of data.symbols with a weight above 0, sharing one ledger and
    asking one InferenceService (publish.model_name) about each."""
    ledger = Ledger(params.trade.ledger)
    return {
        symbol: trader(params.for_symbol(symbol), service=params.publish.model_name, ledger=ledger)
        for symbol, weight in params.weights.items()
        if weight > 0  # weight 0: researched, not traded
    }


def trader(params: Params, *, service: str | None = None, ledger: Ledger | None = None) -> Trader:
    """The trader of params.trade (its ledger, broker, InferenceService and request kind).

    Args:
        service: the InferenceService's model name (default: publish.model_name), when params
            are narrowed to one of several symbols.

    Raises:
        KlinecastError: the broker is testnet and a key is missing from the environment.
    """
    ledger = ledger or Ledger(params.trade.ledger)
    testnet = params.trade.broker == "testnet"
    retry = dataclasses.replace(market.EXCHANGE_RETRY, timeout_s=params.trade.exchange_timeout_seconds)
    url = market.rest_url(testnet=testnet)
    if testnet:
        key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
        if not key or not secret:
            raise KlinecastError(
                f"the broker is testnet: set ${KEY_ENV} and ${SECRET_ENV} "
                "(on the cluster, they come from the trader's Binance Secret)"
            )
        binance = market.client(url=url, api_key=key, api_secret=secret, retry=retry)
        broker = BinanceTestnetBroker(
            binance, retry=retry, recv_window_ms=params.trade.recv_window_ms
        )
    else:
        binance = market.client(url=url, retry=retry)
        broker = PaperBroker.charging(params.backtest, engine=ledger.engine)

    def closed_candles(until, count):
        return market.closed_candles(
            binance,
            symbol=params.data.symbol,
            interval=params.data.interval,
            until=until,
            count=count,
            retry=retry,
        )

    by_symbol = params.trade.request == "symbol"
    return Trader(
        params, ledger, broker, closed_candles, predictor(params, by_symbol=by_symbol, service=service)
    )


def predictor(
    params: Params, *, by_symbol: bool, service: str | None = None, name_candles: bool = False
):
    """Asks the InferenceService by symbol (its online store) or with the candles (named as
    the symbol's with name_candles, for a service with a model per symbol)."""
    url = params.trade.inference_url
    symbol = params.data.symbol if by_symbol else None
    named = params.data.symbol if name_candles and not by_symbol else None
    name = service or params.publish.model_name

    def ask(candles):
        return predict(
            url, name, candles, protocol=params.trade.protocol, symbol=symbol, candles_of=named
        )

    return ask
