"""The models a transformer serves: where each one is, what the predictor calls it, and what
its metadata says (feature names and order, min_history, interval, the rule).

A storage URI names either one model for any symbol the store holds (a plain URI: an artifact
served on its own), or the book's models, a model per symbol ("BTCUSDT=uri,ETHUSDT=uri", the
book's storage string, even for a book of one): the predictor then hosts each as its own model
(`klinecast.book.predictor_model_name`), and the transformer asks the one of each symbol.
`symbol_models` is the one place that reads that string.

A storage URI of the version PRODUCTION follows the registry (`ServedModels.refresh`, every
poll period): a newly promoted version's metadata is loaded and its features warmed beside the
served one, and it is swapped in whole once the predictor serves that version too, so every
answer names the version that produced it.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from klinecast.book import parse_storage, predictor_model_name
from klinecast.config import INTERVALS, NO_PRIMARY
from klinecast.indicators import is_indicator, required_columns
from klinecast.release import registry
from klinecast.research import strategy
from klinecast.serving.errors import Absence, ModelMissing, ModelUnavailable, UnknownSymbol

log = logging.getLogger(__name__)


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
    #: the artifact read: the storage URI, or the version PRODUCTION named when it was read
    uri: str = ""

    def acted_on(self, prob: float, features: np.ndarray) -> float:
        """The probability its rule acts on, for the predictor's prob of a [1, n] feature row:
        0.5 (no view) where a meta-labelled model's primary proposes no bet
        (strategy.meta_probability, as the backtest does)."""
        if self.rule.primary == NO_PRIMARY:
            return prob
        primary = features[:, self.feature_names.index(self.rule.primary)]
        return float(strategy.meta_probability(np.array([prob]), self.rule, primary)[0])

    def load(self, uri: str | None = None) -> None:
        """Reads metadata.json of uri (default: of the version production names now, for a
        storage URI of the version PRODUCTION). Raises RegistryError, OSError or KeyError."""
        uri = uri or registry.resolve_pointer(self.storage_uri)
        local = registry.fetch_artifact(uri, Path(tempfile.mkdtemp(prefix="meta-")))
        metadata = registry.read_artifact_metadata(local)
        self.interval = INTERVALS[metadata.interval]
        self.feature_names = list(metadata.feature_names)
        self.min_history = metadata.min_history
        self.rule = metadata.rule
        if self.rule.primary != NO_PRIMARY and self.rule.primary not in self.feature_names:
            raise KeyError(f"the rule's primary {self.rule.primary} is not among its features")
        self.horizon_hours = metadata.horizon_hours
        self.foreign = tuple(n for n in self.feature_names if not is_indicator(n))
        self.required = required_columns([n for n in self.feature_names if n not in self.foreign])
        self.model_version = registry.version_of(uri, metadata)
        self.uri = uri


def symbol_models(name: str, storage_uri: str) -> dict[str | None, SymbolModel]:
    """The models a storage URI names: a plain URI is one model for any symbol (key None),
    served by the predictor as `name`; the book's storage string, "BTCUSDT=uri,ETHUSDT=uri"
    (`klinecast.book.parse_storage`), is a model per symbol, each served as
    `predictor_model_name(name, symbol)`, whether the book holds one symbol or many.

    Raises:
        ValueError: an entry is not SYMBOL=URI, or names a symbol twice.
    """
    if "=" not in storage_uri.split(",")[0]:
        return {None: SymbolModel(storage_uri, name)}
    return {
        symbol: SymbolModel(uri, predictor_model_name(name, symbol))
        for symbol, uri in parse_storage(storage_uri).items()
    }


def book_version(versions: dict[str, str]) -> str:
    """Each symbol's version in one string, "BTCUSDT=v20261121T214316-5d22359d,ETHUSDT=...",
    which symbol_versions reads back. A version holds neither "," nor "=" (a registry
    version, or an artifact's ISO creation time)."""
    return ",".join(f"{symbol}={version}" for symbol, version in versions.items())


def symbol_versions(text: str) -> dict[str, str]:
    """book_version's string read back: symbol -> its model's version."""
    return dict(entry.split("=", 1) for entry in text.split(","))


class ServedModels:
    """The models of one service, by symbol (None: one model for any symbol), and why a
    symbol's model is not loaded.

    With a model per symbol, one loaded model is enough to serve: a symbol whose model is
    missing is answered 404 naming it when it has no production version (its gate refused
    it), 503 with Retry-After when its storage could not be read, and refresh() tries again
    every poll period, so one refused symbol does not take the others down. One model for
    every symbol must load.
    """

    def __init__(self, name: str, storage_uri: str, *, poll_s: float = 30.0):
        """
        Args:
            poll_s: how often the server calls refresh(): what a 503's Retry-After says.
        """
        self.name = name
        self.poll_s = poll_s
        #: symbol -> the model served now (a newer version is swapped in whole)
        self.models = symbol_models(name, storage_uri)
        #: symbol -> why its model is not loaded (until refresh() loads it)
        self.missing: dict[str | None, Absence] = {}
        self.loaded: set[str | None] = set()
        #: symbol -> a newer version loaded and warmed, waiting for the predictor to serve it
        self.pending: dict[str | None, SymbolModel] = {}

    @property
    def primary_symbol(self) -> str | None:
        return next((s for s in self.models if s in self.loaded), None)

    @property
    def primary(self) -> SymbolModel:
        """The one model's (or, with a model per symbol, the first loaded one's): candle
        requests, the warm-up and the protocol's model metadata read it."""
        return self.models[self.primary_symbol or next(iter(self.models))]

    @property
    def per_symbol(self) -> bool:
        """Whether these are a book's models, a model per symbol (candles must then name their
        symbol), rather than one model for any symbol (a plain storage URI). A book of one is
        a book: its one symbol is named as five would be."""
        return None not in self.models

    @property
    def model_version(self) -> str:
        """The served version; with a model per symbol, each loaded symbol's (book_version),
        which the versioned paths name."""
        if not self.per_symbol:
            return self.primary.model_version
        return book_version({s: m.model_version for s, m in self.models.items() if s in self.loaded})

    def served(self) -> list[SymbolModel]:
        """The loaded models, in the storage URI's order."""
        return [m for s, m in self.models.items() if s in self.loaded]

    def load_all(self) -> bool:
        """Reads every model's metadata (the first load). False when the service cannot serve:
        one model for every symbol did not load, no symbol's did, or they use other features
        than each other (the store holds one feature view)."""
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
                self._miss(symbol, model, exc)
                continue
            self.loaded.add(symbol)
        if not self.loaded:
            log.error("transformer %s NOT ready: no symbol's model loaded", self.name)
            return False
        names = self.primary.feature_names
        differ = [s for s in self.loaded if self.models[s].feature_names != names]
        if differ:  # the store holds one feature view, params' features.indicators
            log.error(
                "transformer %s NOT ready: the models of %s use other features than %s's",
                self.name, ", ".join(differ), self.primary_symbol,
            )  # fmt: skip
            self.loaded.clear()
            return False
        return True

    def refresh(self, *, warm, predictor_serves) -> bool:
        """Loads what changed since: a model still missing, and (a storage URI of the version
        PRODUCTION) a newly promoted version, read and warmed beside the served one, then
        swapped in whole once predictor_serves(it). A model that cannot be read keeps the
        version served, if any.

        Args:
            warm: exercises a model's feature code before it serves.
            predictor_serves: whether the predictor answers for a model's version yet.

        Returns:
            Whether a loaded version still waits for the predictor (call again soon).
        """
        for symbol, served in list(self.models.items()):
            waiting = self.pending.get(symbol)
            if waiting is None:
                loaded = symbol in self.loaded
                if loaded and not registry.follows_pointer(served.storage_uri):
                    continue
                waiting = self._read(symbol, served, warm=warm)
                if waiting is None:
                    continue
            if symbol in self.loaded and not predictor_serves(waiting):
                self.pending[symbol] = waiting  # the served version answers meanwhile
                continue
            self.pending.pop(symbol, None)
            self._swap(symbol, served, waiting)
        return bool(self.pending)

    def _read(self, symbol, served: SymbolModel, *, warm) -> SymbolModel | None:
        """The newer model served's storage URI names now, read and warmed; None when it is
        the served one or cannot be read."""
        try:
            uri = registry.resolve_pointer(served.storage_uri)
            if symbol in self.loaded and uri == served.uri:
                self.missing.pop(symbol, None)  # read again: a failure is worth a log line
                return None
            model = SymbolModel(served.storage_uri, served.predictor_name)
            model.load(uri)
        except (registry.RegistryError, OSError, KeyError) as exc:
            self._miss(symbol, served, exc)
            return None
        if self.loaded - {symbol} and model.feature_names != self.primary.feature_names:
            self._miss(symbol, served, ValueError(
                f"it uses other features than {self.primary_symbol}'s"
            ))  # fmt: skip
            return None
        warm(model)
        return model

    def _swap(self, symbol, served: SymbolModel, model: SymbolModel) -> None:
        was = served.model_version if symbol in self.loaded else None
        self.models[symbol] = model  # one assignment: a request reads the old or the new
        self.loaded.add(symbol)
        self.missing.pop(symbol, None)
        named = f"{symbol}'s model" if symbol else "the model"
        if was is None:
            log.info("transformer %s: %s loaded, version %s", self.name, named, model.model_version)
        else:
            log.info(
                "transformer %s: %s is version %s from now on (was %s)",
                self.name, named, model.model_version, was,
            )  # fmt: skip

    def _miss(self, symbol, model: SymbolModel, exc: Exception) -> None:
        """symbol not loaded (or, loaded, not refreshed) for now; logged once per reason."""
        absence = Absence.of(exc)
        if symbol in self.loaded:  # keeps serving the version it has
            if self.missing.get(symbol) != absence:
                log.warning(
                    "transformer %s: %s's production version NOT read from %s: %s; serving "
                    "version %s meanwhile", self.name, symbol or "the model", model.storage_uri,
                    absence.reason, model.model_version,
                )  # fmt: skip
            self.missing[symbol] = absence  # remembered for the log only: it is served
            return
        if self.missing.get(symbol) != absence:
            status = 503 if absence.transient else 404
            log.error(
                "transformer %s: the model of %s NOT loaded from %s: %s; %s is answered %d "
                "until it loads", self.name, symbol, model.storage_uri, absence.reason, symbol,
                status,
            )  # fmt: skip
        self.missing[symbol] = absence

    def model_of(self, symbol: str) -> SymbolModel:
        """The symbol's model; a symbol this service does not serve is 404, naming it; one
        whose model is not loaded 404 (no production version) or 503 (retry later)."""
        if symbol not in self.models and None not in self.models:
            raise UnknownSymbol(symbol, list(self.models), served=True)
        key = symbol if symbol in self.models else None
        if key not in self.loaded:
            absence = self.missing.get(key)
            if absence is None or absence.transient:
                reason = absence.reason if absence else "it is loading"
                raise ModelUnavailable(f"symbol {symbol!r}'s model", reason, retry_after_s=self.poll_s)
            raise ModelMissing(symbol, absence.reason)
        return self.models[key]
