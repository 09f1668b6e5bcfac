"""Binance through python-binance: closed klines, and bounded retries for every call.

Facts this relies on (python-binance 1.0.37): `Client(..., ping=False)` builds without
network; `API_URL` / `API_TESTNET_URL` can point at another endpoint (the tests' local server).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable

import pandas as pd

from klinecast import environment
from klinecast.config import INTERVALS
from klinecast.data.candles import klines_frame
from klinecast.errors import KlinecastError
from klinecast.retries import GaveUp, Retryable, RetrySettings, call_with_retries

log = logging.getLogger("klinecast.trader")
MAINNET_URL = "https://api.binance.com/api"
TESTNET_URL = "https://testnet.binance.vision/api"
#: Overrides the Binance REST base URL (a proxy, or the tests' local endpoint).
URL_ENV = environment.BINANCE_URL


def rest_url(*, testnet: bool) -> str:
    """Where Binance REST is: $KLINECAST_BINANCE_URL, else the testnet or the mainnet."""
    return os.environ.get(URL_ENV) or (TESTNET_URL if testnet else MAINNET_URL)


class ExchangeError(KlinecastError):
    """Binance refused or failed a call (after the retries, where retrying makes sense)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


class OrderRejected(ExchangeError):
    """The exchange refused an order (a 4xx with Binance's code): it was never booked."""


class OrderInDoubt(ExchangeError):
    """An order POST failed after it may have reached the exchange (a 5xx, a timeout, a dropped
    connection, an answer that is not Binance's): the order may exist. Look it up before
    sending it again."""


#: The exchange's policy: 4 attempts, 0.5 s, 1 s and 2 s apart, 10 s each.
EXCHANGE_RETRY = RetrySettings(attempts=4, backoff_s=0.5, timeout_s=10.0)


def client(
    *,
    url: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    retry: RetrySettings = EXCHANGE_RETRY,
):
    """A python-binance Client whose every REST call goes to url (…/api)."""
    from binance.client import Client

    binance = Client(
        api_key, api_secret, testnet=True, ping=False, requests_params={"timeout": retry.timeout_s}
    )
    binance.API_TESTNET_URL = url.rstrip("/")
    return binance


def call(what: str, fn: Callable, *, retry: RetrySettings = EXCHANGE_RETRY, sleep=time.sleep):
    """fn() with bounded retries on 5xx, timeouts and dropped connections; others fail at once.

    Raises:
        ExchangeError: naming what failed, Binance's code and message, and the attempts made.
    """
    import requests
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    def attempt():
        try:
            return fn()
        except BinanceAPIException as exc:
            if exc.status_code < 500:
                raise ExchangeError(
                    f"{what}: Binance error {exc.code}: {exc.message}", code=exc.code
                ) from None
            raise Retryable(f"HTTP {exc.status_code}: {exc.message}") from None
        except (BinanceRequestException, requests.RequestException) as exc:
            raise Retryable(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    try:
        return call_with_retries(attempt, settings=retry, what=what, log=log, sleep=sleep)
    except GaveUp as exc:
        raise ExchangeError(f"{what} {exc}") from None


def send_once(what: str, fn: Callable):
    """fn() once: an order POST is never retried blindly, since Binance accepts a reused
    client order id once the earlier order filled, and a retry of a POST that did book would
    book a second order.

    Raises:
        OrderRejected: Binance refused it (HTTP 4xx but 408): nothing was booked.
        OrderInDoubt: any other failure; the order may exist.
    """
    import requests
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    try:
        return fn()
    except BinanceAPIException as exc:
        if exc.status_code < 500 and exc.status_code != 408:
            raise OrderRejected(
                f"{what}: Binance error {exc.code}: {exc.message}", code=exc.code
            ) from None
        raise OrderInDoubt(
            f"{what}: HTTP {exc.status_code}: {exc.message}; the order may exist", code=exc.code
        ) from None
    except (BinanceRequestException, requests.RequestException, ValueError) as exc:
        raise OrderInDoubt(
            f"{what}: {type(exc).__name__}: {str(exc)[:200]}; the order may exist"
        ) from None


def closed_candles(
    binance,
    *,
    symbol: str,
    interval: str,
    until: pd.Timestamp,
    count: int,
    retry: RetrySettings = EXCHANGE_RETRY,
) -> pd.DataFrame:
    """The count candles ending with the one that opened at until (closed by now).

    Raises:
        ExchangeError: the exchange failed, or did not return the candle at until.
    """
    step = pd.Timedelta(INTERVALS[interval])
    start = until - step * (count - 1)
    rows: list = []
    cursor = start
    while cursor <= until:  # Binance returns at most 1000 klines per call
        batch = call(
            "GET /api/v3/klines",
            lambda c=cursor: binance.get_klines(
                symbol=symbol,
                interval=interval,
                startTime=int(c.timestamp() * 1000),
                endTime=int(until.timestamp() * 1000),
                limit=1000,
            ),
            retry=retry,
        )
        if not batch:
            break
        rows += batch
        cursor = pd.Timestamp(batch[-1][0], unit="ms", tz="UTC") + step
    if not rows or pd.Timestamp(rows[-1][0], unit="ms", tz="UTC") != until:
        newest = pd.Timestamp(rows[-1][0], unit="ms", tz="UTC") if rows else None
        raise ExchangeError(
            f"Binance has no {symbol} {interval} candle at {until} yet (newest: {newest})"
        )
    frame = klines_frame(
        pd.DataFrame([row[:12] for row in rows]),
        source="GET /api/v3/klines",
        interval=step.to_pytimedelta(),
    )
    return frame.loc[start:until]


def newest_closed_hour(now: dt.datetime) -> pd.Timestamp:
    """The open time of the newest candle that has closed by now (hourly candles)."""
    return pd.Timestamp(now).tz_convert("UTC").floor("h") - pd.Timedelta(hours=1)
