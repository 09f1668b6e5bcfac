"""The transformer: symbols (features from the online store) or recent raw candles (features
computed with the training function) -> the predictor -> the forecast and the model's rule.

One transformer answers for every configured symbol. It serves either one model for any symbol
the store holds (a plain storage URI), or a model per symbol ("BTCUSDT=uri,ETHUSDT=uri"): the
predictor then hosts each as its own model (`predictor_model_name`), and the transformer asks the
one of each symbol. A request may name several symbols (V1 instances, a V2 BYTES tensor); they
are answered in order, and one symbol that cannot be answered fails the whole request, naming
it (README: why no partial results).

Requests by symbol are answered from a cache per (symbol, candle, model version) when the same
hour was asked before, without the store or the predictor; the first request of an hour reads
the store and asks the predictor.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kserve
import numpy as np
import pandas as pd
import prometheus_client
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from klinecast.book import parse_storage, predictor_model_name
from klinecast.config import INTERVALS
from klinecast.indicators import is_indicator, required_columns
from klinecast.release import registry
from klinecast.research import strategy
from klinecast.research.features import compute_features
from klinecast.serving import payload as parse
from klinecast.serving.errors import (
    ModelMissing,
    PredictorAnswerError,
    StaleFeatures,
    StoreUnavailable,
    UnknownSymbol,
)

log = logging.getLogger(__name__)
#: Whether the transformer's last online-store read answered (kserve's /metrics shows it).
STORE_UP = prometheus_client.Gauge(
    "klinecast_online_store_up", "1 if the last online store read answered, else 0", ["model"]
)
JSON_TYPES = ("application/json", "application/cloudevents+json")
DIRECTIONS = {1: "up", -1: "down", 0: "flat"}
#: The answer's outputs, in order: name -> V2 datatype.
OUTPUTS = {
    "prob_up": "FP64",
    "direction": "BYTES",
    "model_version": "BYTES",
    "feature_time": "BYTES",
    "strategy": "BYTES",
}
CACHE_SIZE = 4096
#: The most symbols one request may name (each distinct one costs a store read and a predictor
#: call; STORE_THREADS of the reads run at once, within the store's timeout).
MAX_SYMBOLS = 20
#: params' online.stale_after_minutes default, for a transformer made without params
STALE_AFTER = pd.Timedelta(minutes=15)
#: Store reads that may wait at once; more queue, and answer 503 when their time is up.
STORE_THREADS = 4
#: How long a symbol's newest row, once read, is reused without asking Redis again. A sync's
#: new row is seen at most this late; a fresh hour's first answer still reads the store.
ROW_TTL_S = 1.0

# What preprocess learned about the request, for predict and postprocess of the same request.
_request = contextvars.ContextVar("klinecast_request")


@dataclass
class RequestContext:
    v2: bool
    feature_time: str = ""
    request_id: str | None = None
    outputs: list[str] = field(default_factory=list)
    cache_key: tuple | None = None


@dataclass(frozen=True)
class Cached:
    """A symbol's answer for an hour that was asked before: no store read, no predictor."""

    prob_up: float


@dataclass
class SymbolModel:
    """One served model: where it is, what the predictor calls it, and its metadata."""

    storage_uri: str
    predictor_name: str
    feature_names: list[str] = field(default_factory=list)
    min_history: int = 0
    interval: dt.timedelta = dt.timedelta(hours=1)
    rule: strategy.StrategyRule = strategy.SEED_RULE
    horizon_hours: int = 1
    required: tuple[str, ...] = ()
    #: another pair's features (features.cross_asset), which no candle request can make
    foreign: tuple[str, ...] = ()
    model_version: str = ""

    def load(self) -> None:
        """Reads metadata.json (of the version production names now, for a URI of the version
        PRODUCTION). Raises RegistryError, OSError or KeyError."""
        uri = registry.resolve_production(self.storage_uri)
        local = registry.fetch_artifact(uri, Path(tempfile.mkdtemp(prefix="meta-")))
        metadata = registry.read_artifact_metadata(local)
        self.interval = INTERVALS[metadata.interval]
        self.feature_names = list(metadata.feature_names)
        self.min_history = metadata.min_history
        self.rule = metadata.rule
        self.horizon_hours = metadata.horizon_hours
        self.foreign = tuple(n for n in self.feature_names if not is_indicator(n))
        self.required = required_columns([n for n in self.feature_names if n not in self.foreign])
        self.model_version = registry.version_of(uri, metadata)


def symbol_models(name: str, storage_uri: str) -> dict[str | None, SymbolModel]:
    """The models a storage URI names: a plain URI is one model for any symbol (key None),
    served by the predictor as `name`; "BTCUSDT=uri,ETHUSDT=uri" (the book's storage string,
    `klinecast.book.parse_storage`) is a model per symbol, each served as
    `predictor_model_name(name, symbol)`.

    Raises:
        ValueError: an entry is not SYMBOL=URI, or names a symbol twice.
    """
    if "=" not in storage_uri.split(",")[0]:
        return {None: SymbolModel(storage_uri, name)}
    return {
        symbol: SymbolModel(uri, predictor_model_name(name, symbol))
        for symbol, uri in parse_storage(storage_uri).items()
    }


@dataclass
class SymbolItem:
    """One symbol of a request: its model, its row's hour, and its answer once known."""

    symbol: str
    model: SymbolModel
    feature_time: str
    cache_key: tuple
    features: np.ndarray | None = None
    prob_up: float | None = None


@dataclass
class SymbolBatch:
    """A request's symbols, in order (preprocess -> predict -> postprocess)."""

    items: list[SymbolItem]


class ForecastTransformer(kserve.Model):
    """Features by symbol from the online store, or from candles with compute_features.

    It reads the artifact's metadata.json (feature names and order, min_history, interval,
    the rule) from the same storage URI as the predictor, so both describe one model version.
    """

    def __init__(
        self,
        name: str,
        storage_uri: str,
        *,
        online=None,
        clock=None,
        cache_size=CACHE_SIZE,
        stale_after: pd.Timedelta = STALE_AFTER,
    ):
        """
        Args:
            online: klinecast.serving.online_store.StoreSettings, or None when no online store is configured
                (symbol requests then get 503).
            clock: returns the current UTC time (a fixed one for replays and tests).
            cache_size: answers kept per (symbol or window, candle, model version); 0: none.
            stale_after: a symbol is refused once the candle after its newest row closed this
                long ago (params' online.stale_after_minutes).
        """
        super().__init__(name)
        self.storage_uri = storage_uri
        self.online = online
        self.clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self.stale_after = stale_after
        self.models = symbol_models(name, storage_uri)
        #: symbol -> why its model is not loaded (answered 404 until a retry loads it)
        self.missing: dict[str, str] = {}
        self.loaded: set[str | None] = set()
        self.store = None
        self.cache: OrderedDict[tuple, float] = OrderedDict()
        self.cache_size = cache_size
        self.rows: dict[str, tuple[float, object]] = {}  # symbol -> (read at, OnlineRow)
        self.reader = None
        self.store_up: bool | None = None  # None until the first read
        self.pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="online-store")
        self.ready = False

    # the one model's (or, with a model per symbol, the first loaded one's) metadata: candle
    # requests, the warm-up and the protocol's model metadata read these
    @property
    def primary(self) -> SymbolModel:
        return self.models[self.primary_symbol or next(iter(self.models))]

    @property
    def primary_symbol(self) -> str | None:
        return next((s for s in self.models if s in self.loaded), None)

    feature_names = property(lambda self: self.primary.feature_names)
    min_history = property(lambda self: self.primary.min_history)
    interval = property(lambda self: self.primary.interval)
    required = property(lambda self: self.primary.required)

    @property
    def model_version(self) -> str:
        """The served version; with a model per symbol, the loaded ones' joined (the
        versioned paths)."""
        return "+".join(m.model_version for s, m in self.models.items() if s in self.loaded)

    def load(self) -> bool:
        """Reads the metadata of every model not loaded yet (all of them the first time).

        With a model per symbol, one loaded model makes the service ready: a symbol whose model
        is missing (no production version: its gate refused it) is answered 404 naming it, and
        the server calls load() again until it loads, so one refused symbol does not take the
        others down. One model for every symbol must load.
        """
        if self.ready:
            return self._load_missing()
        self.loaded.clear()
        self.missing.clear()
        for symbol, model in self.models.items():
            try:
                model.load()
            except (registry.RegistryError, OSError, KeyError) as exc:
                if symbol is None:
                    log.error(
                        "transformer %s NOT ready: metadata from %s: %s",
                        self.name, model.storage_uri, exc,
                    )  # fmt: skip
                    return False
                self._miss(symbol, model, str(exc))
                continue
            self.loaded.add(symbol)
        if not self.loaded:
            log.error("transformer %s NOT ready: no symbol's model loaded", self.name)
            return False
        differ = [s for s in self.loaded if self.models[s].feature_names != self.feature_names]
        if differ:  # the store holds one feature view, params' features.indicators
            log.error(
                "transformer %s NOT ready: the models of %s use other features than %s's",
                self.name, ", ".join(differ), self.primary_symbol,
            )  # fmt: skip
            self.loaded.clear()
            return False
        self.cache.clear()
        self.rows.clear()
        if self.online is not None:
            from klinecast.serving.online_store import StoreReader

            self.reader = StoreReader(self.online, self.feature_names)
        self._warm_up()
        self.ready = True
        symbols = [s for s in self.models if s and s in self.loaded]
        served = ", ".join(symbols) or "any symbol in the store"
        log.info(
            "transformer %s ready: %d features, min_history %d, version %s; serves %s",
            self.name, len(self.feature_names), self.min_history, self.model_version, served,
        )  # fmt: skip
        return True

    def _load_missing(self) -> bool:
        """Loads the models still missing, each into a fresh SymbolModel swapped in whole, as
        requests read the served ones meanwhile. True once none is missing."""
        for symbol in list(self.missing):
            model = SymbolModel(self.models[symbol].storage_uri, self.models[symbol].predictor_name)
            try:
                model.load()
            except (registry.RegistryError, OSError, KeyError) as exc:
                self._miss(symbol, model, str(exc))
                continue
            if model.feature_names != self.feature_names:
                self._miss(symbol, model, f"it uses other features than {self.primary_symbol}'s")
                continue
            self.models[symbol] = model
            self.loaded.add(symbol)
            del self.missing[symbol]
            log.info(
                "transformer %s: %s's model loaded, version %s", self.name, symbol,
                model.model_version,
            )  # fmt: skip
        return not self.missing

    def _miss(self, symbol: str, model: SymbolModel, reason: str) -> None:
        """symbol answered 404 for now; logged once per reason, not on every retry."""
        if self.missing.get(symbol) != reason:
            log.error(
                "transformer %s: the model of %s NOT loaded from %s: %s; %s is answered 404 "
                "until it loads", self.name, symbol, model.storage_uri, reason, symbol,
            )  # fmt: skip
        self.missing[symbol] = reason

    # -- the Open Inference Protocol's model metadata
    def get_input_types(self) -> list[dict]:
        """Symbols (one or more); or, for clients that bring their own data, one tensor per
        candle column."""
        candles = [{"name": "open_time", "datatype": "INT64", "shape": [-1]}] + [
            {"name": column, "datatype": "FP64", "shape": [-1]} for column in self.required
        ]
        return [{"name": "symbol", "datatype": "BYTES", "shape": [-1]}, *candles]

    def get_output_types(self) -> list[dict]:
        """One value per symbol asked (one for a candle request)."""
        return [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in OUTPUTS.items()]

    def _warm_up(self) -> None:
        """Exercises what the first request would otherwise pay for, before ready: the feature
        code on a window of synthetic candles, and the store (its registry, a connection, one
        read). A store that does not answer now is logged; the server still becomes ready."""
        from klinecast.serving import online_store

        self._warm_up_row(self._warm_up_window())
        if self.reader is not None:
            try:
                self.reader.newest_row("WARMUP")
                self._store_answered()
            except online_store.OnlineStoreError as exc:  # the sync has not run, or no Redis
                self._store_failed(str(exc))

    def _warm_up_window(self) -> pd.DataFrame:
        """min_history synthetic candles that pass every candle rule."""
        steps = np.arange(self.min_history, dtype=float)
        close = 100.0 + np.sin(steps / 7.0)
        index = pd.date_range(
            "2020-01-01", periods=self.min_history, freq=self.interval, tz="UTC", name="open_time"
        )
        return pd.DataFrame(
            {"open": close, "high": close + 1, "low": close - 1, "close": close,
             "volume": 10.0 + steps % 5, "taker_buy_volume": 5.0 + steps % 3},
            index=index,
        )  # fmt: skip

    def _warm_up_row(self, window: pd.DataFrame) -> np.ndarray:
        """The newest feature row of a synthetic window; another pair's columns (cross-asset
        features, which one window cannot make) stand in as 0."""
        own = [name for name in self.feature_names if name not in self.primary.foreign]
        frame = compute_features(window, indicators=own, interval=self.interval).frame
        row = frame.reindex(columns=self.feature_names).fillna(0.0)
        return row.to_numpy(dtype=np.float64)[-1:]

    async def warm_up_predictor(self) -> None:
        """One request through preprocess, the predictor and postprocess at start-up, so the
        first client does not pay for the predictor's connection. A predictor that is not up
        yet is logged and skipped; its first client pays then."""
        from klinecast.serving.client import v1_request, v2_request

        if not self.ready:
            return
        window = self._warm_up_window()
        try:
            if len(self.models) > 1 or self.primary.foreign:  # no candles: ask each model
                row = self._warm_up_row(window)
                for model in [m for s, m in self.models.items() if s in self.loaded]:
                    await self._ask(SymbolItem("WARMUP", model, "", (), features=row), {})
                return
            await self(v1_request(window), {"content-type": "application/json"})
            v2 = v2_request(window)["inputs"]
            inputs = [InferInput(t["name"], t["shape"], t["datatype"], t["data"]) for t in v2]
            await self(InferRequest(self.name, inputs), {})
        except Exception as exc:  # a predictor still starting, a network hiccup
            log.info("predictor not warmed up (%s); the first request connects", type(exc).__name__)
        self.cache.clear()

    # -- preprocess: a symbol or candles -> the predictor's request (or a cached answer)
    async def preprocess(self, payload, headers=None):
        v2 = isinstance(payload, InferRequest)
        context = RequestContext(v2=v2)
        if v2:
            context.request_id = payload.id
            context.outputs = parse.requested_outputs(payload, known=OUTPUTS)
            symbols = _v2_symbols(payload.inputs)
        else:
            _check_content_type(payload, headers)
            symbols = _v1_symbols(payload)
        _request.set(context)
        if symbols is not None:
            if len(symbols) > MAX_SYMBOLS:
                raise InvalidInput(
                    f"{len(symbols)} symbols in one request; at most {MAX_SYMBOLS}"
                )
            distinct = list(dict.fromkeys(symbols))  # a symbol asked twice is read once
            models = [self._model_of(symbol) for symbol in distinct]  # 404 before any read
            items = await asyncio.gather(
                *(self._symbol_item(s, m) for s, m in zip(distinct, models, strict=True))
            )
            found = dict(zip(distinct, items, strict=True))
            return SymbolBatch([found[symbol] for symbol in symbols])
        named = _v2_candles_symbol(payload) if v2 else _v1_candles_symbol(payload)
        if named is not None:  # a symbol's candles: that symbol's model (a replay of the past)
            model = self._model_of(named)
            feature_time, key, cached, features = self._candle_row(model, payload, v2)
            item = SymbolItem(named, model, feature_time, key, features=features, prob_up=cached)
            return SymbolBatch([item])
        if len(self.models) > 1:
            raise InvalidInput(
                f"this service serves a model per symbol ({', '.join(self.models)}): ask by "
                'symbol, {"instances": [{"symbol": "BTCUSDT"}]}, or name the candles\' symbol, '
                '{"symbol": "BTCUSDT", "instances": [<candles>]}'
            )
        context.feature_time, context.cache_key, cached, features = self._candle_row(
            self.primary, payload, v2
        )
        if cached is not None:
            return Cached(cached)
        if self.predictor_config.predictor_protocol == "v2":
            tensor = InferInput("features", list(features.shape), "FP64", features.tolist())
            return InferRequest(self.name, [tensor])
        return {"instances": features.tolist()}

    def _candle_row(self, model: SymbolModel, payload, v2: bool):
        """A candle request's newest feature row for model.

        Returns:
            (feature_time, cache_key, the cached probability or None, the row or None).
        """
        if model.foreign:
            raise InvalidInput(
                f"this model reads another pair's features too ({', '.join(model.foreign)}: "
                "features.cross_asset), which one pair's candles cannot make: ask by symbol, "
                '{"instances": [{"symbol": "ETHUSDT"}]}'
            )
        candles = (
            parse.candles_from_v2(payload.inputs, required=model.required)
            if v2
            else parse.candles_from_v1(payload, required=model.required)
        )
        parse.check_window(candles, interval=model.interval, min_history=model.min_history)
        feature_time = (candles.index[-1] + model.interval).isoformat()
        # the same window again (many clients ask about the same hour): its answer
        digest = hashlib.blake2b(candles.index.asi8.tobytes(), digest_size=16)
        for column in model.required:
            digest.update(candles[column].to_numpy().tobytes())
        key = ("candles", digest.hexdigest(), model.model_version)
        cached = self.cache.get(key)
        if cached is not None:
            return feature_time, key, cached, None
        frame = compute_features(
            candles, indicators=model.feature_names, interval=model.interval
        ).frame
        if frame.empty or frame.index[-1] != candles.index[-1]:
            raise InvalidInput(parse.no_row_reason(candles, interval=model.interval))
        return feature_time, key, None, frame[model.feature_names].to_numpy(dtype=np.float64)[-1:]

    def _model_of(self, symbol: str) -> SymbolModel:
        """The symbol's model; a symbol this service does not serve, or whose model did not
        load, is 404, naming it."""
        if symbol not in self.models and None not in self.models:
            raise UnknownSymbol(symbol, list(self.models), served=True)
        # a retry may load it meanwhile, in its thread: it swaps the model in, then clears this
        reason = self.missing.get(symbol)
        if reason is not None:
            raise ModelMissing(symbol, reason)
        return self.models.get(symbol, self.models.get(None))

    async def _symbol_item(self, symbol: str, model: SymbolModel) -> SymbolItem:
        row = await self._online_row(symbol)
        item = SymbolItem(
            symbol,
            model,
            feature_time=(row.candle_time + model.interval).isoformat(),
            cache_key=(symbol, row.candle_time.value, model.model_version),
        )
        item.prob_up = self.cache.get(item.cache_key)
        if item.prob_up is None:
            item.features = row.features[None, :]
        return item

    async def _online_row(self, symbol: str):
        """The symbol's newest row, refused when the store is away, lacks it, or is stale."""
        if self.reader is None:
            raise StoreUnavailable("no online store is configured; send candles instead")
        read_at, row = self.rows.get(symbol, (-ROW_TTL_S, None))
        if time.monotonic() - read_at >= ROW_TTL_S:
            row = await self._off_the_loop(self.reader.newest_row, symbol)
            if row is None:
                raise UnknownSymbol(symbol, await self._off_the_loop(self.reader.known_symbols))
            self.rows[symbol] = (time.monotonic(), row)
        now = self.clock()
        close = row.candle_time + self.interval
        if close > now:
            raise StoreUnavailable(
                f"the store's newest {symbol} candle closes at {close.isoformat()}, after this "
                f"server's clock ({now.isoformat()}): it cannot answer for the past"
            )
        if now >= close + self.interval + self.stale_after:  # the next candle closed long ago
            newest_closed = now.floor(self.interval) - self.interval
            raise StaleFeatures(symbol, newest=row.candle_time, expected=newest_closed)
        return row

    async def _off_the_loop(self, read, *args):
        """A store read in the reader's threads, bounded by the store's timeout: a store that
        is down or hung costs this request a 503, and the event loop never waits on it."""
        from klinecast.serving import online_store

        loop = asyncio.get_running_loop()
        try:
            answer = await asyncio.wait_for(
                loop.run_in_executor(self.pool, read, *args), timeout=self.online.timeout_s
            )
        except TimeoutError:
            self._store_failed(f"no answer within {self.online.timeout_s * 1000:.0f} ms")
            raise StoreUnavailable(
                f"online store {self.online.where} did not answer within "
                f"{self.online.timeout_s * 1000:.0f} ms; retry later"
            ) from None
        except online_store.OnlineStoreError as exc:
            self._store_failed(str(exc))
            raise StoreUnavailable(f"{exc}; retry later") from None
        self._store_answered()
        return answer

    def _store_failed(self, reason: str) -> None:
        if self.store_up is not False:
            log.warning(
                "online store %s is away (%s): symbol requests answer 503 until it is back; "
                "candle requests are served as usual",
                self.online.where,
                reason,
            )
        self.store_up = False
        STORE_UP.labels(self.name).set(0)

    def _store_answered(self) -> None:
        if self.store_up is False:
            log.info("online store %s answers again", self.online.where)
        self.store_up = True
        STORE_UP.labels(self.name).set(1)

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, Cached):
            return payload
        if isinstance(payload, SymbolBatch):
            asked = list({id(i): i for i in payload.items if i.prob_up is None}.values())
            answers = await asyncio.gather(*(self._ask(item, headers) for item in asked))
            for item, answer in zip(asked, answers, strict=True):
                try:
                    item.prob_up = _probability(answer)
                except PredictorAnswerError as exc:
                    raise PredictorAnswerError(f"{exc.message} (for {item.symbol})") from None
            return payload
        try:
            return await super().predict(payload, headers)
        except (httpx.TransportError, httpx.HTTPStatusError):
            raise  # the server answers these: 503 unreachable, 502 with the predictor's status
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # kserve's client parses the predictor's 200 answer (orjson, InferResponse) and
            # raises these, InvalidInput included, for a body that is not an inference answer:
            # the predictor's fault, not the client's
            raise PredictorAnswerError(f"not an inference answer ({type(exc).__name__})") from None

    async def _ask(self, item: SymbolItem, headers):
        """The predictor's answer for one symbol's row, from that symbol's model."""
        from kserve.model import append_forwardable_headers

        features = item.features
        if self.predictor_config.predictor_protocol == "v2":
            tensor = InferInput("features", list(features.shape), "FP64", features.tolist())
            request = InferRequest(item.model.predictor_name, [tensor])
        else:
            request = {"instances": features.tolist()}
        try:
            return await self._http_client.infer(
                self.predictor_config.predictor_base_url,
                model_name=item.model.predictor_name,
                data=request,
                headers=append_forwardable_headers(headers, {"Content-Type": "application/json"}),
            )
        except (httpx.TransportError, httpx.HTTPStatusError):
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise PredictorAnswerError(
                f"not an inference answer ({type(exc).__name__}) for {item.symbol}"
            ) from None

    # -- postprocess: the probability -> the forecast, with the model's rule
    def postprocess(self, result, headers=None, response_headers=None):
        context: RequestContext = _request.get()
        if isinstance(result, SymbolBatch):
            answers = []
            for item in result.items:
                if item.features is not None:  # asked the predictor now, not from the cache
                    self._keep(item.cache_key, item.prob_up)
                answers.append(self._forecast(item.prob_up, item.model, item.feature_time))
            return self._answer(context, answers)
        prob = result.prob_up if isinstance(result, Cached) else _probability(result)
        if context.cache_key is not None and not isinstance(result, Cached):
            self._keep(context.cache_key, prob)
        return self._answer(context, [self._forecast(prob, self.primary, context.feature_time)])

    def _keep(self, key: tuple, prob: float) -> None:
        """The answer's probability in the cache (oldest out first)."""
        if self.cache_size:
            self.cache[key] = prob
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    @staticmethod
    def _forecast(prob: float, model: SymbolModel, feature_time: str) -> dict:
        """The answer for one probability with its model's rule: what the rule does from a
        flat book; a holder applies the same rule, strategy.next_position, with its own
        position (the trader, with its ledger's)."""
        decided_at = pd.Timestamp(feature_time)  # the rule's cadence reads its hour
        position = strategy.next_position(prob, model.rule, decision_hour=decided_at.hour)
        return {
            "prob_up": prob,
            "direction": DIRECTIONS[position],
            "model_version": model.model_version,
            "feature_time": feature_time,
            "strategy": model.rule.as_dict() | {"horizon_hours": model.horizon_hours},
        }

    def _answer(self, context: RequestContext, answers: list[dict]):
        """V1 {"predictions": [...]} or V2 tensors of one value per answer, in order."""
        if not context.v2:
            return {"predictions": answers}
        wanted = context.outputs or list(OUTPUTS)
        for answer in answers:
            answer["strategy"] = json.dumps(answer["strategy"])
        outputs = [
            InferOutput(name, [len(answers)], OUTPUTS[name], [a[name] for a in answers])
            for name in wanted
        ]
        return InferResponse(
            response_id=context.request_id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            model_version=self.model_version,
        )


def _probability(result) -> float:
    """The predictor's probability; a malformed answer is the predictor's fault (502)."""
    try:
        if isinstance(result, InferResponse):
            value = np.asarray(result.outputs[0].data, dtype=np.float64).ravel()[0]
        else:
            value = float(result["predictions"][0])
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PredictorAnswerError(f"no probability in it ({type(exc).__name__})") from None
    if not 0.0 <= float(value) <= 1.0:
        raise PredictorAnswerError(f"prob_up {value} is not in [0, 1]")
    return float(value)


def _v1_symbols(payload) -> list[str] | None:
    """The symbols of {"instances": [{"symbol": "BTCUSDT"}, ...]}, or None for candles."""
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        instances = payload["instances"]
        if instances and isinstance(instances[0], dict) and "symbol" in instances[0]:
            if any(not isinstance(i, dict) or set(i) != {"symbol"} for i in instances):
                raise InvalidInput(
                    'a symbol request is {"instances": [{"symbol": "BTCUSDT"}, ...]}: each '
                    "instance holds a symbol and nothing else"
                )
            return [_symbol(instance["symbol"]) for instance in instances]
    return None


def _v2_symbols(inputs: list) -> list[str] | None:
    named = [t for t in inputs if getattr(t, "name", None) == "symbol"]
    if not named:
        return None
    if len(inputs) != 1 or named[0].datatype != "BYTES":
        raise InvalidInput("a symbol request has one input: symbol, BYTES, shape [n]")
    data = named[0].data
    if isinstance(data, np.ndarray):
        data = data.ravel().tolist()
    if not isinstance(data, list) or not data:
        raise InvalidInput("input symbol: expected one or more values, e.g. ['BTCUSDT']")
    return [_symbol(v.decode() if isinstance(v, bytes) else v) for v in data]


def _v1_candles_symbol(payload) -> str | None:
    """The symbol named beside V1 candles, {"symbol": "ETHUSDT", "instances": [<candles>]}."""
    if isinstance(payload, dict) and "symbol" in payload:
        return _symbol(payload["symbol"])
    return None


def _v2_candles_symbol(request) -> str | None:
    """The symbol named in a V2 candle request's parameters, {"symbol": "ETHUSDT"}."""
    parameters = getattr(request, "parameters", None) or {}
    if "symbol" not in parameters:
        return None
    value = parameters["symbol"]
    return _symbol(getattr(value, "string_param", value))


def _symbol(value) -> str:
    if not isinstance(value, str) or not value.isalnum() or value.upper() != value:
        raise InvalidInput(f"symbol: expected an upper-case pair like BTCUSDT, got {value!r}")
    return value


def _check_content_type(payload, headers) -> None:
    content_type = (headers or {}).get("content-type", "application/json").split(";")[0].strip()
    if isinstance(payload, bytes | str) or (content_type and content_type not in JSON_TYPES):
        raise InvalidInput(f"Content-Type {content_type!r} is not supported; send application/json")


def offline_probabilities(candles: pd.DataFrame, artifact_dir: Path) -> pd.Series:
    """The batch path the serving answers must equal: features on full history, then predict."""
    import xgboost as xgb

    metadata = registry.read_artifact_metadata(artifact_dir)
    names = list(metadata.feature_names)
    frame = compute_features(candles, indicators=names, interval=INTERVALS[metadata.interval]).frame
    booster = xgb.Booster()
    booster.load_model(str(Path(artifact_dir) / registry.MODEL_FILE))
    proba = booster.predict(
        xgb.DMatrix(frame[names].to_numpy(dtype=np.float64)), validate_features=False
    )
    return pd.Series(proba, index=frame.index, name="prob_up")
