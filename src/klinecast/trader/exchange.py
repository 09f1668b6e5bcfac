"""Binance through python-binance: closed klines, and bounded retries for every call.

Facts this relies on (python-binance 1.0.37): `Client(..., ping=False)` builds without
network; `API_URL` / `API_TESTNET_URL` can point at another endpoint (the tests' local server).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from klinecast.config import INTERVALS
from klinecast.data.candles import parse_klines
from klinecast.errors import KlinecastError

log = logging.getLogger("klinecast.trader")
MAINNET_URL = "https://api.binance.com/api"
TESTNET_URL = "https://testnet.binance.vision/api"


class ExchangeError(KlinecastError):
    """Binance refused or failed a call (after the retries, where retrying makes sense)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    backoff_s: float = 0.5  # doubled after every failed attempt
    timeout_s: float = 10.0


DEFAULT_RETRY = Retry()


def client(*, url: str, api_key: str | None = None, api_secret: str | None = None, retry=Retry()):
    """A python-binance Client whose every REST call goes to url (…/api)."""
    from binance.client import Client

    binance = Client(
        api_key, api_secret, testnet=True, ping=False, requests_params={"timeout": retry.timeout_s}
    )
    binance.API_TESTNET_URL = url.rstrip("/")
    return binance


def call(what: str, fn: Callable, *, retry: Retry = Retry(), sleep=time.sleep):
    """fn() with bounded retries on 5xx, timeouts and dropped connections; others fail at once.

    Raises:
        ExchangeError: naming what failed, Binance's code and message, and the attempts made.
    """
    import requests
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    delay = retry.backoff_s
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except BinanceAPIException as exc:
            if exc.status_code < 500:
                raise ExchangeError(
                    f"{what}: Binance error {exc.code}: {exc.message}", code=exc.code
                ) from None
            reason = f"HTTP {exc.status_code}: {exc.message}"
        except (BinanceRequestException, requests.RequestException) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        if attempt == retry.attempts:
            raise ExchangeError(f"{what} failed {attempt} times; last: {reason}") from None
        log.warning("%s: %s; retry %d/%d in %.1f s", what, reason, attempt, retry.attempts, delay)
        sleep(delay)
        delay *= 2


def closed_candles(
    binance, *, symbol: str, interval: str, until: pd.Timestamp, count: int, retry=Retry()
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
    text = "\n".join(",".join(str(v) for v in row[:12]) for row in rows)
    frame = parse_klines(text.encode(), source="GET /api/v3/klines", interval=step.to_pytimedelta())
    return frame.loc[start:until]


def newest_closed_hour(now: dt.datetime) -> pd.Timestamp:
    """The open time of the newest candle that has closed by now (hourly candles)."""
    return pd.Timestamp(now).tz_convert("UTC").floor("h") - pd.Timedelta(hours=1)
