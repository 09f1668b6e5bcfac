"""The models a transformer serves: where each one is, what the predictor calls it, and what
its metadata says (feature names and order, min_history, interval, the rule).

A storage URI names either one model for any symbol the store holds (a plain URI), or a model
per symbol ("BTCUSDT=uri,ETHUSDT=uri"): the predictor then hosts each as its own model
(`symbol_model_name`), and the transformer asks the one of each symbol. `symbol_models` is the
one place that reads that string.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from klinecast.config import INTERVALS, symbol_model_name
from klinecast.indicators import is_indicator, required_columns
from klinecast.release import registry
from klinecast.research import strategy
from klinecast.serving.errors import ModelMissing, UnknownSymbol

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
    served by the predictor as `name`; "BTCUSDT=uri,ETHUSDT=uri" is a model per symbol, each
    served as `symbol_model_name(name, symbols, symbol)`.

    Raises:
        ValueError: an entry is not SYMBOL=URI, or names a symbol twice.
    """
    if "=" not in storage_uri.split(",")[0]:
        return {None: SymbolModel(storage_uri, name)}
    pairs = [entry.split("=", 1) for entry in storage_uri.split(",") if entry.strip()]
    if any(len(pair) != 2 or not pair[0] or not pair[1] for pair in pairs):
        raise ValueError(f"expected SYMBOL=URI[,SYMBOL=URI...], got {storage_uri!r}")
    symbols = tuple(symbol.strip() for symbol, _ in pairs)
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"a symbol is named twice in {storage_uri!r}")
    return {
        symbol: SymbolModel(uri.strip(), symbol_model_name(name, symbols, symbol))
        for symbol, (_, uri) in zip(symbols, pairs, strict=True)
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
    symbol's model is not loaded yet.

    With a model per symbol, one loaded model is enough to serve: a symbol whose model is
    missing (no production version: its gate refused it) is answered 404 naming it, and the
    server calls load() again until it loads, so one refused symbol does not take the others
    down. One model for every symbol must load.
    """

    def __init__(self, name: str, storage_uri: str):
        self.name = name
        self.models = symbol_models(name, storage_uri)
        #: symbol -> why its model is not loaded (answered 404 until a retry loads it)
        self.missing: dict[str, str] = {}
        self.loaded: set[str | None] = set()

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
        """Whether each symbol has a model of its own (candles must then name theirs)."""
        return len(self.models) > 1

    @property
    def model_version(self) -> str:
        """The served version; with a model per symbol, each loaded symbol's (book_version),
        which the versioned paths name."""
        return self.version_of([s for s in self.models if s in self.loaded])

    def version_of(self, symbols: list[str | None]) -> str:
        """The version an answer about symbols names: the one model's, or with a model per
        symbol, each symbol's, SYMBOL=VERSION in the order asked (book_version)."""
        if not self.per_symbol:
            return self.primary.model_version
        return book_version({s: self.models[s].model_version for s in symbols})

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
                self._miss(symbol, model, str(exc))
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

    def load_missing(self) -> bool:
        """Loads the models still missing, each into a fresh SymbolModel swapped in whole, as
        requests read the served ones meanwhile. True once none is missing."""
        for symbol in list(self.missing):
            model = SymbolModel(self.models[symbol].storage_uri, self.models[symbol].predictor_name)
            try:
                model.load()
            except (registry.RegistryError, OSError, KeyError) as exc:
                self._miss(symbol, model, str(exc))
                continue
            if model.feature_names != self.primary.feature_names:
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

    def model_of(self, symbol: str) -> SymbolModel:
        """The symbol's model; a symbol this service does not serve, or whose model did not
        load, is 404, naming it."""
        if symbol not in self.models and None not in self.models:
            raise UnknownSymbol(symbol, list(self.models), served=True)
        # a retry may load it meanwhile, in its thread: it swaps the model in, then clears this
        reason = self.missing.get(symbol)
        if reason is not None:
            raise ModelMissing(symbol, reason)
        return self.models.get(symbol, self.models.get(None))
