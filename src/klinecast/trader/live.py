"""The trader as the hourly CronJob runs it, assembled from params: the ledger, the broker
(paper, or Binance spot testnet with keys from the environment), Binance's closed candles and
the InferenceService."""

from __future__ import annotations

import dataclasses
import os

from klinecast import environment
from klinecast.book import Book, challenger_service
from klinecast.config import Params
from klinecast.data import market
from klinecast.errors import KlinecastError
from klinecast.serving.client import predict
from klinecast.trader.brokers import BinanceTestnetBroker, PaperBroker
from klinecast.trader.cycle import Trader
from klinecast.trader.ledger import Ledger

#: Where the testnet keys come from (on the cluster, the Binance Secret's keys).
KEY_ENV, SECRET_ENV = environment.BINANCE_API_KEY, environment.BINANCE_API_SECRET


def book(params: Params) -> dict[str, Trader]:
    """A trader per traded symbol of the book (weight above 0), sharing one ledger and asking
    the book's one InferenceService (publish.service_name) about each."""
    ledger = Ledger(params.trade.ledger)
    book = Book(params)
    return {symbol: trader(book.for_symbol(symbol), ledger=ledger) for symbol in book.traded}


def trader(params: Params, *, ledger: Ledger | None = None) -> Trader:
    """The trader of params.trade (its ledger, broker, InferenceService and request kind), for
    params narrowed to one symbol (`Book.for_symbol`).

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
        params, ledger, broker, closed_candles, predictor(params, by_symbol=by_symbol),
        shadow=challenger_predictor(params, by_symbol=by_symbol),
    )  # fmt: skip


def predictor(params: Params, *, by_symbol: bool, challenger: bool = False):
    """Asks the book's InferenceService (publish.service_name; the challenger's,
    trade.challenger_url, if challenger) about params' one symbol: by symbol (its online
    store), or with the candles, named as the symbol's so that the symbol's own model answers."""
    url = params.trade.challenger_url if challenger else params.trade.inference_url
    symbol = params.data.symbol if by_symbol else None
    named = None if by_symbol else params.data.symbol
    name = params.publish.service_name
    if challenger:
        name = challenger_service(name)

    def ask(candles):
        return predict(
            url, name, candles, protocol=params.trade.protocol, symbol=symbol, candles_of=named
        )

    return ask


def challenger_predictor(params: Params, *, by_symbol: bool):
    """The challenger's predictor for the shadow book, or None when trade.challenger_url is
    empty (no shadow)."""
    if not params.trade.challenger_url:
        return None
    return predictor(params, by_symbol=by_symbol, challenger=True)
