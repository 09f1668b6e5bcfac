"""Feature lookup: the newest feature row a request is about, from the online store (by
symbol) or from its candles (`compute_features`, the training function), or the answer kept
for it when the same question was asked before.

Store reads run off the event loop in a few threads, bounded by the store's timeout: a store
that is down or hung costs a symbol request a 503, and the server never waits on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import prometheus_client
from kserve.errors import InvalidInput

from klinecast.research.features import compute_features
from klinecast.serving import payload as parse
from klinecast.serving.cache import AnswerCache
from klinecast.serving.errors import StaleFeatures, StoreUnavailable, UnknownSymbol
from klinecast.serving.models import SymbolModel

log = logging.getLogger(__name__)
#: Whether the transformer's last online-store read answered (kserve's /metrics shows it).
STORE_UP = prometheus_client.Gauge(
    "klinecast_online_store_up", "1 if the last online store read answered, else 0", ["model"]
)
#: params' online.stale_after_minutes default, for a transformer made without params
STALE_AFTER = pd.Timedelta(minutes=15)
#: Store reads that may wait at once; more queue, and answer 503 when their time is up.
STORE_THREADS = 4
#: How long a symbol's newest row, once read, is reused without asking Redis again. A sync's
#: new row is seen at most this late; a fresh hour's first answer still reads the store.
ROW_TTL_S = 1.0


@dataclass
class Item:
    """One symbol of a request: its model, its row's hour, and the row to ask the predictor
    about or the answer kept for it (prob_up, set once known)."""

    symbol: str | None
    model: SymbolModel
    feature_time: str
    cache_key: tuple
    features: np.ndarray | None = None
    prob_up: float | None = None


def candle_item(symbol: str | None, model: SymbolModel, candles: pd.DataFrame,
                cache: AnswerCache) -> Item:  # fmt: skip
    """A candle request's newest row for model, or the answer kept for the same window.

    Raises:
        InvalidInput: the model reads another pair's features, or the window is too short,
            off the grid, or yields no row for its newest candle.
    """
    parse.check_window(candles, interval=model.interval, min_history=model.min_history)
    feature_time = (candles.index[-1] + model.interval).isoformat()
    # the same window again (many clients ask about the same hour): its answer
    digest = hashlib.blake2b(candles.index.asi8.tobytes(), digest_size=16)
    for column in model.required:
        digest.update(candles[column].to_numpy().tobytes())
    item = Item(symbol, model, feature_time, ("candles", digest.hexdigest(), model.model_version))
    item.prob_up = cache.get(item.cache_key)
    if item.prob_up is None:
        frame = compute_features(
            candles, indicators=model.feature_names, interval=model.interval
        ).frame
        if frame.empty or frame.index[-1] != candles.index[-1]:
            raise InvalidInput(parse.no_row_reason(candles, interval=model.interval))
        item.features = frame[model.feature_names].to_numpy(dtype=np.float64)[-1:]
    return item


def check_candles_possible(model: SymbolModel) -> None:
    """Refuses candles for a model that reads another pair's features too."""
    if model.foreign:
        raise InvalidInput(
            f"this model reads another pair's features too ({', '.join(model.foreign)}: "
            "features.cross_asset), which one pair's candles cannot make: ask by symbol, "
            '{"instances": [{"symbol": "ETHUSDT"}]}'
        )


class OnlineRows:
    """Each symbol's newest row in the online store, refused when the store is away, lacks
    it, or the row is stale; the store's state for operators (a log line when it changes, the
    `klinecast_online_store_up` gauge)."""

    def __init__(self, settings, names: list[str], *, model_name: str, clock, stale_after):
        """
        Args:
            settings: klinecast.serving.online_store.StoreSettings.
            names: the feature names, in the model's order.
            clock: returns the current UTC time (a fixed one for replays and tests).
            stale_after: a symbol is refused once the candle after its newest row closed
                this long ago.
        """
        from klinecast.serving.online_store import StoreReader

        self.settings = settings
        self.reader = StoreReader(settings, names)
        self.model_name = model_name
        self.clock = clock
        self.stale_after = stale_after
        self.pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="online-store")
        self.rows: dict[str, tuple[float, object]] = {}  # symbol -> (read at, OnlineRow)
        self.up: bool | None = None  # None until the first read

    def warm_up(self) -> None:
        """Opens the store (its registry, a connection) with one read. A store that does not
        answer now is logged; the server still becomes ready."""
        from klinecast.serving import online_store

        try:
            self.reader.newest_row("WARMUP")
            self._answered()
        except online_store.OnlineStoreError as exc:  # the sync has not run, or no Redis
            self._failed(str(exc))

    async def item(self, symbol: str, model: SymbolModel, cache: AnswerCache, *,
                   interval: dt.timedelta) -> Item:  # fmt: skip
        """The symbol's newest row for model, or the answer kept for its hour."""
        row = await self.newest(symbol, interval=interval)
        item = Item(
            symbol,
            model,
            feature_time=(row.candle_time + model.interval).isoformat(),
            cache_key=(symbol, row.candle_time.value, model.model_version),
        )
        item.prob_up = cache.get(item.cache_key)
        if item.prob_up is None:
            item.features = row.features[None, :]
        return item

    async def newest(self, symbol: str, *, interval: dt.timedelta):
        """The symbol's newest row, refused when the store is away, lacks it, or is stale."""
        read_at, row = self.rows.get(symbol, (-ROW_TTL_S, None))
        if time.monotonic() - read_at >= ROW_TTL_S:
            row = await self._off_the_loop(self.reader.newest_row, symbol)
            if row is None:
                raise UnknownSymbol(symbol, await self._off_the_loop(self.reader.known_symbols))
            self.rows[symbol] = (time.monotonic(), row)
        now = self.clock()
        close = row.candle_time + interval
        if close > now:
            raise StoreUnavailable(
                f"the store's newest {symbol} candle closes at {close.isoformat()}, after this "
                f"server's clock ({now.isoformat()}): it cannot answer for the past"
            )
        if now >= close + interval + self.stale_after:  # the next candle closed long ago
            newest_closed = now.floor(interval) - interval
            raise StaleFeatures(symbol, newest=row.candle_time, expected=newest_closed)
        return row

    async def _off_the_loop(self, read, *args):
        """A store read in the reader's threads, bounded by the store's timeout."""
        from klinecast.serving import online_store

        loop = asyncio.get_running_loop()
        try:
            answer = await asyncio.wait_for(
                loop.run_in_executor(self.pool, read, *args), timeout=self.settings.timeout_s
            )
        except TimeoutError:
            reason = (
                f"online store {self.settings.where} did not answer within "
                f"{self.settings.timeout_s * 1000:.0f} ms"
            )
            self._failed(reason)
            raise StoreUnavailable(f"{reason}; retry later") from None
        except online_store.OnlineStoreError as exc:
            self._failed(str(exc))
            raise StoreUnavailable(f"{exc}; retry later") from None
        self._answered()
        return answer

    def forget(self) -> None:
        """Drops the rows read so far (a model was (re)loaded)."""
        self.rows.clear()

    def _failed(self, reason: str) -> None:
        """reason: what failed, naming the store ("online store 10.0.0.7:6379 unreachable
        (ConnectionError)")."""
        if self.up is not False:
            log.warning(
                "%s: symbol requests answer 503 until it answers again; candle requests are "
                "served as usual",
                reason,
            )
        self.up = False
        STORE_UP.labels(self.model_name).set(0)

    def _answered(self) -> None:
        if self.up is False:
            log.info("online store %s answers again", self.settings.where)
        self.up = True
        STORE_UP.labels(self.model_name).set(1)


def warm_up_window(*, min_history: int, interval: dt.timedelta) -> pd.DataFrame:
    """min_history synthetic candles that pass every candle rule."""
    steps = np.arange(min_history, dtype=float)
    close = 100.0 + np.sin(steps / 7.0)
    index = pd.date_range(
        "2020-01-01", periods=min_history, freq=interval, tz="UTC", name="open_time"
    )
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close,
         "volume": 10.0 + steps % 5, "taker_buy_volume": 5.0 + steps % 3},
        index=index,
    )  # fmt: skip


def warm_up_row(model: SymbolModel, window: pd.DataFrame) -> np.ndarray:
    """The newest feature row of a synthetic window; another pair's columns (cross-asset
    features, which one window cannot make) stand in as 0."""
    own = [name for name in model.feature_names if name not in model.foreign]
    frame = compute_features(window, indicators=own, interval=model.interval).frame
    row = frame.reindex(columns=model.feature_names).fillna(0.0)
    return row.to_numpy(dtype=np.float64)[-1:]
