"""The Feast online feature store: its definitions, writing feature rows into it, and reading
one symbol's newest row (the sync that keeps it fresh is `klinecast.serving.feature_sync`).

Entity `symbol`; one feature view, `klinecast_features`, over the features the pipeline
computes (params.yaml's features.indicators) plus `open_time`, the candle the row belongs to,
with the candle's close as the event time. The online store is Redis; Feast prefixes every key
with the project, so a test's own project is its own key space. Rows are written straight to
the online store (the offline source is declared because Feast requires one, and never read).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.config import OnlineParams
from klinecast.errors import KlinecastError

log = logging.getLogger("klinecast.serving.online_store")

FEATURE_VIEW = "klinecast_features"
CANDLE_TIME = "open_time"  # epoch milliseconds of the row's candle, stored beside the features
WRITE_BATCH = 200


class OnlineStoreError(KlinecastError):
    """The online store (Redis) cannot be reached or refused a read or write."""


@dataclass(frozen=True)
class StoreSettings:
    """Where the store is (params.yaml's `online` section; the environment overrides it when
    params are loaded, see klinecast.environment.PARAMS_OVERRIDES)."""

    redis: str
    registry: str
    project: str
    #: Connect and read timeout of every Redis call, in seconds, with no retry: what a server's
    #: reads wait at most. None keeps redis-py's defaults (retries with backoff: the sync's).
    timeout_s: float | None = None

    @classmethod
    def of(cls, online: OnlineParams, *, bounded: bool = False) -> StoreSettings:
        """The store of params' online section; bounded: with online.timeout_ms (a server's)."""
        timeout = online.timeout_ms / 1000 if bounded else None
        return cls(online.redis, online.registry, online.project, timeout)

    @property
    def connection_string(self) -> str:
        """Feast's connection string: with timeout_s, redis-py's socket timeouts and no retry,
        so a store that is down or hung fails a call once, within the timeout."""
        if self.timeout_s is None:
            return self.redis
        t = self.timeout_s
        return f"{self.redis},socket_timeout={t},socket_connect_timeout={t},retry=null"

    @property
    def where(self) -> str:
        """host:port of the store, fit for a message (no password)."""
        return self.redis.split(",", 1)[0]

    @property
    def symbols_key(self) -> str:
        """The Redis set of the symbols the sync has written (for a 404's list)."""
        return f"klinecast:{self.project}:symbols"


def definitions(indicators: Sequence[str], *, offline_path: str):
    """The entity and the feature view, as `feast apply` and klinecast both register them."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[symbol],
        ttl=dt.timedelta(0),  # rows never expire; staleness is judged by their candle time
        schema=[Field(name="symbol", dtype=String), Field(name=CANDLE_TIME, dtype=Int64)]
        + [Field(name=name, dtype=Float64) for name in indicators],
        source=FileSource(path=offline_path, timestamp_field="event_timestamp"),
        online=True,
        description="klinecast.research.features.compute_features, one row per closed candle",
    )
    return [symbol, view]


def open_store(settings: StoreSettings, indicators: Sequence[str], *, apply: bool):
    """A FeatureStore on Redis; with apply, (re-)registers the definitions (idempotent)."""
    from feast import FeatureStore, RepoConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    if "://" not in settings.registry:
        os.makedirs(os.path.dirname(os.path.abspath(settings.registry)), exist_ok=True)
    config = RepoConfig(
        project=settings.project,
        provider="local",
        registry=settings.registry,
        online_store=RedisOnlineStoreConfig(connection_string=settings.connection_string),
        entity_key_serialization_version=3,
    )
    logging.getLogger("feast").setLevel(logging.WARNING)  # a line per registry refresh
    store = FeatureStore(config=config)
    if apply:
        offline = os.path.join(os.path.dirname(settings.registry) or ".", "offline.parquet")
        store.apply(definitions(indicators, offline_path=offline))
    return store


@dataclass(frozen=True)
class OnlineRow:
    """One symbol's newest row in the store."""

    symbol: str
    candle_time: pd.Timestamp  # open_time of the candle the features end with
    features: np.ndarray  # in the order asked for


def newest_row(store, symbol: str, names: Sequence[str]) -> OnlineRow | None:
    """The symbol's newest row, or None when the store holds none.

    Raises:
        OnlineStoreError: Redis cannot be reached, or the view lacks one of the names.
    """
    import redis

    refs = [f"{FEATURE_VIEW}:{CANDLE_TIME}"] + [f"{FEATURE_VIEW}:{name}" for name in names]
    try:
        values = store.get_online_features(features=refs, entity_rows=[{"symbol": symbol}])
        answer = values.to_dict()
    except redis.RedisError as exc:
        where = store.config.online_store.connection_string.split(",", 1)[0]
        raise OnlineStoreError(f"online store {where} unreachable ({type(exc).__name__})") from None
    except Exception as exc:  # Feast's FeatureViewNotFoundException and friends
        raise OnlineStoreError(f"the online store lacks the model's features: {exc}") from None
    stamp = answer[CANDLE_TIME][0]
    if stamp is None:
        return None
    row = np.array([answer[name][0] for name in names], dtype=np.float64)
    return OnlineRow(symbol, pd.Timestamp(int(stamp), unit="ms", tz="UTC"), row)


def known_symbols(settings: StoreSettings, *, client=None) -> list[str]:
    """The symbols the sync has written, for an unknown symbol's 404."""
    import redis

    try:
        members = (client or _redis(settings)).smembers(settings.symbols_key)
    except redis.RedisError as exc:
        raise OnlineStoreError(
            f"online store {settings.where} unreachable ({type(exc).__name__})"
        ) from None
    return sorted(m.decode() for m in members)


def _redis(settings: StoreSettings):
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, kwargs = RedisOnlineStore._parse_connection_string(settings.connection_string)
    return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)


class StoreReader:
    """A server's reads: one FeatureStore and one Redis client, opened on first use and kept,
    every call bounded by the settings' timeout. The calls block, so a server runs them off
    its event loop."""

    def __init__(self, settings: StoreSettings, names: Sequence[str]):
        self.settings = settings
        self.names = list(names)
        self._store = None
        self._client = None

    def newest_row(self, symbol: str) -> OnlineRow | None:
        """Raises OnlineStoreError (see newest_row)."""
        if self._store is None:
            self._store = self._open()
        return newest_row(self._store, symbol, self.names)

    def known_symbols(self) -> list[str]:
        if self._client is None:
            self._client = _redis(self.settings)
        return known_symbols(self.settings, client=self._client)

    def _open(self):
        try:
            return open_store(self.settings, self.names, apply=False)
        except Exception as exc:  # Feast raises many types for an unreadable registry
            raise OnlineStoreError(
                f"cannot open the Feast registry {self.settings.registry}: {type(exc).__name__}"
            ) from None


def write_rows(
    store, settings: StoreSettings, symbol: str, frame: pd.DataFrame, names: Sequence[str],
    *, interval: dt.timedelta, progress: Callable[[int], None] | None = None,
) -> int:  # fmt: skip
    """Writes the rows oldest first, in batches; returns how many were written.

    Raises:
        OnlineStoreError: Redis failed; the batches before the failing one stay written.
    """
    import redis

    rows = pd.DataFrame(
        {
            "symbol": symbol,
            CANDLE_TIME: frame.index.asi8 // 1_000_000,
            **{name: frame[name].to_numpy(dtype=np.float64) for name in names},
            "event_timestamp": frame.index + pd.Timedelta(interval),  # when the row became known
        }
    )
    written = 0
    try:
        _redis(settings).sadd(settings.symbols_key, symbol)
        for start in range(0, len(rows), WRITE_BATCH):
            batch = rows.iloc[start : start + WRITE_BATCH]
            store.write_to_online_store(FEATURE_VIEW, batch)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
    except redis.RedisError as exc:
        newest = rows[CANDLE_TIME].iloc[written - 1] if written else None
        kept = (
            f"the {written} row(s) up to {pd.Timestamp(newest, unit='ms', tz='UTC')} are written"
            if written
            else "nothing was written"
        )
        raise OnlineStoreError(
            f"online store unreachable while writing {symbol} ({type(exc).__name__}); {kept}, "
            "and the next sync continues from there"
        ) from None
    return written
