"""The transformer: symbols (features from the online store) or recent raw candles (features
computed with the training function) -> the predictor -> the forecast and the model's rule.

It follows KServe's split: `preprocess` reads what the request asks (`requests`) and looks up
each symbol's feature row (`lookup`), `predict` asks the predictor about the rows not answered
before, and `postprocess` builds the answer (`answer`). Which models it serves, and their
metadata, is `models`.

One transformer answers for every configured symbol. A request may name several symbols (V1
instances, a V2 BYTES tensor); they are answered in order, and one symbol that cannot be
answered fails the whole request, naming it (docs/decisions.md#why-no-partial-results).

Requests are answered from a cache per (symbol, candle, model version), or per (window,
model version) for candles, when the same question was asked before, without the store or the
predictor; the first request of an hour reads the store and asks the predictor.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import kserve
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from klinecast.data.candles import CANDLE_COLUMNS
from klinecast.serving import lookup, requests
from klinecast.serving.answer import OUTPUTS, build, forecast, probability
from klinecast.serving.cache import CACHE_SIZE, AnswerCache
from klinecast.serving.errors import PredictorAnswerError, StoreUnavailable
from klinecast.serving.lookup import STALE_AFTER, Item
from klinecast.serving.models import ServedModels, book_version
from klinecast.serving.payload import CANDLES, OPEN_TIME
from klinecast.serving.protocol import VERSION_HEADER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """A request on its way through preprocess -> predict -> postprocess: what it asks, and
    one item per symbol asked (one for candles), in order."""

    asked: requests.Asked
    items: list[Item]


class ForecastTransformer(kserve.Model):
    """Features by symbol from the online store, or from candles with compute_features.

    It reads the artifact's metadata.json (feature names and order, min_history, interval,
    the rule) from the same storage URI as the predictor, so both describe one model version.
    """

    #: a symbol whose model is not loaded is refused by itself (ServedModels.model_of); the
    #: service is never refused whole for it (serving.protocol reads this of every model)
    absent = None

    def __init__(
        self,
        name: str,
        storage_uri: str,
        *,
        online=None,
        clock=None,
        cache_size=CACHE_SIZE,
        stale_after: pd.Timedelta = STALE_AFTER,
        poll_s: float = 30.0,
    ):
        """
        Args:
            online: klinecast.serving.online_store.StoreSettings, or None when no online store
                is configured (symbol requests then get 503).
            clock: returns the current UTC time (a fixed one for replays and tests).
            cache_size: answers kept per (symbol or window, candle, model version); 0: none.
            stale_after: a symbol is refused once the candle after its newest row closed this
                long ago (params' online.stale_after_minutes).
            poll_s: how often the server calls refresh() (a model not loaded yet answers 503
                with this Retry-After).
        """
        super().__init__(name)
        self.storage_uri = storage_uri
        self.settings = online
        self.clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self.stale_after = stale_after
        self.models = ServedModels(name, storage_uri, poll_s=poll_s)
        self.cache = AnswerCache(cache_size)
        self.online: lookup.OnlineRows | None = None
        self.ready = False

    feature_names = property(lambda self: self.models.primary.feature_names)
    min_history = property(lambda self: self.models.primary.min_history)
    interval = property(lambda self: self.models.primary.interval)
    required = property(lambda self: self.models.primary.required)
    model_version = property(lambda self: self.models.model_version)

    def served_versions(self) -> list[str]:
        """The versions a versioned path may name: the one served (each symbol's, for a book)."""
        return [self.model_version]

    def refresh(self) -> float | None:
        """What the server calls every poll period: the first load until it succeeds, then the
        models still missing and newly promoted versions (ServedModels.refresh).

        Returns:
            Seconds until it wants to be called again when sooner than the poll period (a new
            version waits for the predictor), else None.
        """
        if not self.ready:
            self.load()
            return None
        waiting = self.models.refresh(warm=self._warm, predictor_serves=self._predictor_serves)
        return 1.0 if waiting else None

    def load(self) -> bool:
        """Reads every model's metadata, then warms up before the service reports ready (see
        ServedModels)."""
        if not self.models.load_all():
            return False
        self.cache.clear()
        if self.settings is not None:
            self.online = lookup.OnlineRows(
                self.settings, self.feature_names, model_name=self.name, clock=self.clock,
                stale_after=self.stale_after,
            )  # fmt: skip
        self._warm_up()
        self.ready = True
        symbols = [s for s in self.models.models if s and s in self.models.loaded]
        served = ", ".join(symbols) or "any symbol in the store"
        log.info(
            "transformer %s ready: %d features, min_history %d, version %s; serves %s",
            self.name, len(self.feature_names), self.min_history, self.model_version, served,
        )  # fmt: skip
        return True

    # -- the Open Inference Protocol's model metadata
    def get_input_types(self) -> list[dict]:
        """Symbols (one or more); or, for clients that bring their own data, the candles: their
        open times and one [n, 9] tensor of the candle columns (serving.payload), or one
        tensor per column."""
        candles = [
            {"name": OPEN_TIME, "datatype": "INT64", "shape": [-1]},
            {"name": CANDLES, "datatype": "FP64", "shape": [-1, len(CANDLE_COLUMNS)]},
        ]
        columns = [{"name": c, "datatype": "FP64", "shape": [-1]} for c in self.required]
        return [{"name": "symbol", "datatype": "BYTES", "shape": [-1]}, *candles, *columns]

    def get_output_types(self) -> list[dict]:
        """One value per symbol asked (one for a candle request)."""
        return [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in OUTPUTS.items()]

    def _warm(self, model) -> None:
        """A model's feature code exercised before it serves (a new version's)."""
        lookup.warm_up_row(
            model, lookup.warm_up_window(min_history=model.min_history, interval=model.interval)
        )

    def _predictor_serves(self, model) -> bool:
        """Whether the predictor answers for model's version yet (its versioned ready path)."""
        config = self.predictor_config
        if config is None or not config.predictor_host:
            return True
        version = quote(model.model_version, safe="")
        url = f"{config.predictor_base_url}/v2/models/{model.predictor_name}/versions/{version}/ready"
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _warm_up(self) -> None:
        """Exercises what the first request would otherwise pay for, before ready: the feature
        code on a window of synthetic candles, and the store (its registry, a connection, one
        read)."""
        primary = self.models.primary
        window = lookup.warm_up_window(min_history=primary.min_history, interval=primary.interval)
        lookup.warm_up_row(primary, window)
        if self.online is not None:
            self.online.warm_up()

    async def warm_up_predictor(self) -> None:
        """One request through preprocess, the predictor and postprocess at start-up, so the
        first client does not pay for the predictor's connection. A predictor that is not up
        yet is logged and skipped; its first client pays then."""
        from klinecast.serving.client import v1_request, v2_request

        if not self.ready:
            return
        primary = self.models.primary
        window = lookup.warm_up_window(min_history=primary.min_history, interval=primary.interval)
        try:
            if self.models.per_symbol or primary.foreign:  # no candles: ask each model
                row = lookup.warm_up_row(primary, window)
                for model in self.models.served():
                    await self._ask(Item("WARMUP", model, "", (), features=row), {})
                return
            await self(v1_request(window), {"content-type": "application/json"})
            v2 = v2_request(window)["inputs"]
            inputs = [InferInput(t["name"], t["shape"], t["datatype"], t["data"]) for t in v2]
            await self(InferRequest(self.name, inputs), {})
        except Exception as exc:  # a predictor still starting, a network hiccup
            log.info("predictor not warmed up (%s); the first request connects", type(exc).__name__)
        self.cache.clear()

    # -- preprocess: what the request asks -> each symbol's feature row (or a kept answer)
    async def preprocess(self, payload, headers=None) -> Batch:
        asked = requests.read(payload, headers, outputs=OUTPUTS)
        if asked.symbols:
            distinct = list(dict.fromkeys(asked.symbols))  # a symbol asked twice is read once
            models = [self.models.model_of(symbol) for symbol in distinct]  # 404 before a read
            if self.online is None:
                raise StoreUnavailable("no online store is configured; send candles instead")
            interval = self.models.primary.interval
            items = await asyncio.gather(
                *(self.online.item(s, m, self.cache, interval=interval)
                  for s, m in zip(distinct, models, strict=True))
            )  # fmt: skip
            found = dict(zip(distinct, items, strict=True))
            return Batch(asked, [found[symbol] for symbol in asked.symbols])
        if asked.candles_of is not None:  # a symbol's candles: its model (a replay of the past)
            model = self.models.model_of(asked.candles_of)
        elif self.models.per_symbol:
            raise InvalidInput(
                f"this service serves a model per symbol ({', '.join(self.models.models)}): ask "
                'by symbol, {"instances": [{"symbol": "BTCUSDT"}]}, or name the candles\' '
                'symbol, {"symbol": "BTCUSDT", "instances": [<candles>]}'
            )
        else:
            model = self.models.primary
        lookup.check_candles_possible(model)
        candles = asked.candles(required=model.required)
        return Batch(asked, [lookup.candle_item(asked.candles_of, model, candles, self.cache)])

    def validate(self, payload):
        return payload  # preprocess read and checked the request

    # -- predict: the rows not answered before -> each one's model at the predictor
    async def predict(self, payload: Batch, headers=None, response_headers=None) -> Batch:
        asked = list({id(i): i for i in payload.items if i.prob_up is None}.values())
        answers = await asyncio.gather(*(self._ask(item, headers) for item in asked))
        for item, answer in zip(asked, answers, strict=True):
            try:
                item.prob_up = item.model.acted_on(probability(answer), item.features)
            except PredictorAnswerError as exc:
                raise PredictorAnswerError(exc.message + _for(item)) from None
        return payload

    async def _ask(self, item: Item, headers):
        """The predictor's answer for one symbol's row, from that symbol's model."""
        from kserve.model import append_forwardable_headers

        try:
            return await self._http_client.infer(
                self.predictor_config.predictor_base_url,
                model_name=item.model.predictor_name,
                data=predictor_request(item, protocol=self.predictor_config.predictor_protocol),
                # the version whose metadata this item was read with: the predictor answers
                # with that one, also while a newer one is swapped in
                headers=append_forwardable_headers(
                    headers,
                    {"Content-Type": "application/json", VERSION_HEADER: item.model.model_version},
                ),
            )
        except (httpx.TransportError, httpx.HTTPStatusError):
            raise  # the server answers these: 503 unreachable, 502 with the predictor's status
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # kserve's client parses the predictor's 200 answer (orjson, InferResponse) and
            # raises these, InvalidInput included, for a body that is not an inference answer:
            # the predictor's fault, not the client's
            named = f" for {item.symbol}" if item.symbol else ""
            raise PredictorAnswerError(
                f"not an inference answer ({type(exc).__name__}){named}"
            ) from None

    # -- postprocess: each probability -> the forecast, with its model's rule
    def postprocess(self, result: Batch, headers=None, response_headers=None):
        forecasts = []
        for item in result.items:
            if item.features is not None:  # asked the predictor now, not from the cache
                self.cache.keep(item.cache_key, item.prob_up)
            forecasts.append(forecast(item.prob_up, item.model, item.feature_time))
        # the versions of the models that answered, each symbol's (each item's model is the
        # one its row was asked about, even if a newer version was swapped in meanwhile)
        if self.models.per_symbol:
            version = book_version({i.symbol: i.model.model_version for i in result.items})
        else:
            version = result.items[0].model.model_version
        return build(result.asked, forecasts, model_name=self.name, model_version=version)


def predictor_request(item: Item, *, protocol: str):
    """The predictor's request about one row: V1 {"instances": [[...]]} or one V2 FP64
    tensor `features` of shape [1, n], for the item's model."""
    features = item.features
    if protocol == "v2":
        tensor = InferInput("features", list(features.shape), "FP64", features.tolist())
        return InferRequest(item.model.predictor_name, [tensor])
    return {"instances": features.tolist()}


def _for(item: Item) -> str:
    """Which symbol a predictor's answer was for, when the request named one."""
    return f" (for {item.symbol})" if item.symbol else ""
