"""The Book: the symbols klinecast researches and trades, each with its model's name, its share
of capital, its cap and its files.

One symbol is a book of one. Every stage, command and manifest takes the book and fans out
over `Book.symbols`; none asks how many there are. What differs per symbol is decided here,
once:

- **names**: a symbol's model in the registry is publish.model_name with `{symbol}` (lower
  case) and `{interval}` filled in, so adding a symbol never renames another's model. The
  InferenceService of the whole book is publish.service_name; its predictor hosts each
  symbol's model as `predictor_model_name`; the challengers' InferenceService is
  `challenger_service` of it.
- **capital**: each symbol's weight (portfolio.weights, else equal), its share of
  trade.capital and its cap (trade.max_quantities, else trade.max_quantity), applied by
  `Book.for_symbol`, the params one symbol's stages run with.
- **storage**: the book's model locations as one string, SYMBOL=URI[,SYMBOL=URI...]
  (`storage_string`, `parse_storage`), which both model servers load and deploy patches.
- **files**: where each symbol's and the book's files live (`Layout`), which the CLI's
  defaults, the stages and dvc.yaml (tests/test_dvc_stages.py holds them equal) share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from klinecast.config import Params, PortfolioParams
from klinecast.errors import KlinecastError


@dataclass(frozen=True)
class SymbolFiles:
    """Where one symbol's stage outputs live (dvc.yaml's `foreach` stages)."""

    symbol: str
    raw: Path  # the verified archives (ingest)
    candles: Path
    candles_report: Path
    features: Path
    features_report: Path
    tune_dir: Path  # best_params.json, trials.csv and the study's plots
    metrics: Path  # evaluate's scorecard
    predictions: Path
    equity: Path
    candidate: Path  # train's artifact directory
    receipt: Path  # publish.json
    report: Path  # report.html

    @property
    def best_params(self) -> Path:
        return self.tune_dir / "best_params.json"

    @property
    def trials(self) -> Path:
        return self.tune_dir / "trials.csv"


@dataclass(frozen=True)
class BookFiles:
    """Where the book's shared files live."""

    raw: Path  # every symbol's archives, a folder each
    reference: Path  # features.reference's candles for the cross-asset features
    pool: Path  # the pooled model's record (reports/pool.json)
    reports: Path  # reports/symbols/<symbol> of every symbol
    portfolio: Path
    portfolio_equity: Path
    portfolio_page: Path


@dataclass(frozen=True)
class Layout:
    """The one record of where files live, under root (the repository, where dvc.yaml runs)."""

    root: Path = Path(".")

    def symbol(self, symbol: str) -> SymbolFiles:
        data, reports = self._data / symbol, self.reports / "symbols" / symbol
        return SymbolFiles(
            symbol=symbol,
            raw=self._data / "raw" / symbol,
            candles=data / "candles.parquet",
            candles_report=reports / "candles.json",
            features=data / "features.parquet",
            features_report=reports / "features.json",
            tune_dir=reports / "tune",
            metrics=reports / "metrics.json",
            predictions=reports / "predictions.parquet",
            equity=reports / "equity.csv",
            candidate=self.root / "models" / symbol / "candidate",
            receipt=reports / "publish.json",
            report=reports / "report.html",
        )

    @property
    def book(self) -> BookFiles:
        return BookFiles(
            raw=self._data / "raw",
            reference=self._data / "reference.parquet",
            pool=self.reports / "pool.json",
            reports=self.reports / "symbols",
            portfolio=self.reports / "portfolio.json",
            portfolio_equity=self.reports / "portfolio_equity.csv",
            portfolio_page=self.reports / "portfolio.html",
        )

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def _data(self) -> Path:
        return self.root / "data"


#: The layout of a checkout: the paths dvc.yaml names, relative to where it runs.
LAYOUT = Layout()


@dataclass(frozen=True)
class Book:
    """The symbols of params (data.symbols), in order, with what each one is given."""

    params: Params

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.params.data.symbols

    @property
    def weights(self) -> dict[str, float]:
        """Each symbol -> its share of the book's capital: portfolio.weights, else equal."""
        given = self.params.portfolio.weights
        return {s: given[s] if given else 1 / len(self.symbols) for s in self.symbols}

    @property
    def traded(self) -> tuple[str, ...]:
        """The symbols the trader trades: those with a weight above 0 (weight 0: researched
        and evaluated, never traded)."""
        return tuple(s for s, weight in self.weights.items() if weight > 0)

    def cap(self, symbol: str) -> float:
        """The largest position of the symbol, in its own base asset."""
        trade = self.params.trade
        return trade.max_quantities.get(self._known(symbol), trade.max_quantity)

    def capital(self, symbol: str) -> float:
        """The quote currency the symbol trades: its weight's share of trade.capital."""
        return self.params.trade.capital * self.weights[self._known(symbol)]

    def model_name(self, symbol: str) -> str:
        """The symbol's model in the registry: publish.model_name filled in."""
        return model_name(self.params.publish.model_name, self._known(symbol), self.interval)

    @property
    def interval(self) -> str:
        return self.params.data.interval

    @property
    def service_name(self) -> str:
        """The InferenceService that answers for every symbol of the book."""
        return self.params.publish.service_name

    def predictor_model_name(self, symbol: str) -> str:
        return predictor_model_name(self.service_name, self._known(symbol))

    def legacy_model_name(self, old_name: str, symbol: str) -> str:
        """What the symbol's model was called before names were patterns (`klinecast registry
        migrate`): old_name itself in a book of one, old_name-<symbol> among several."""
        alone = self.symbols == (self._known(symbol),)
        return old_name if alone else f"{old_name}-{symbol.lower()}"

    def for_symbol(self, symbol: str) -> Params:
        """The params one symbol's stages run with: data.symbols holds it alone, trade.capital
        is its share and trade.max_quantity its cap; no weights or caps of others are left.

        Raises:
            KlinecastError: the symbol is not in data.symbols.
        """
        params = self.params
        return dataclasses.replace(
            params,
            data=dataclasses.replace(params.data, symbols=(self._known(symbol),)),
            trade=dataclasses.replace(
                params.trade,
                capital=self.capital(symbol),
                max_quantity=self.cap(symbol),
                max_quantities={},
            ),
            portfolio=PortfolioParams(),
        )

    def files(self, symbol: str, layout: Layout = LAYOUT) -> SymbolFiles:
        return layout.symbol(self._known(symbol))

    def storage_string(self, uri_of: Callable[[str], str]) -> str:
        """Every symbol's model location as one string: uri_of(symbol) for each symbol."""
        return storage_string({symbol: uri_of(symbol) for symbol in self.symbols})

    def _known(self, symbol: str) -> str:
        if symbol not in self.symbols:
            raise KlinecastError(
                f"{symbol} is not configured: data.symbols lists {', '.join(self.symbols)}"
            )
        return symbol


def model_name(pattern: str, symbol: str, interval: str) -> str:
    """publish.model_name's pattern for a symbol: `{symbol}` in lower case, `{interval}`."""
    return pattern.format(symbol=symbol.lower(), interval=interval)


def predictor_model_name(service_name: str, symbol: str) -> str:
    """What the book's predictor calls a symbol's model (and the transformer asks it for)."""
    return f"{service_name}-{symbol.lower()}"


def challenger_service(service_name: str) -> str:
    """The InferenceService that serves each symbol's challenger (the version CHALLENGER of
    its model, `release.registry`), beside the book's own: the trader's shadow book asks it."""
    return f"{service_name}-challenger"


def storage_string(uris: Mapping[str, str]) -> str:
    """symbol -> model URI as SYMBOL=URI[,SYMBOL=URI...], in the mapping's order."""
    for symbol, uri in uris.items():
        if not symbol or "," in uri or "=" in symbol:
            raise ValueError(f"cannot encode {symbol}={uri}: a symbol or a URI holds ',' or '='")
    return ",".join(f"{symbol}={uri}" for symbol, uri in uris.items())


def parse_storage(text: str) -> dict[str, str]:
    """SYMBOL=URI[,SYMBOL=URI...] back into symbol -> URI, in order.

    Raises:
        ValueError: an entry is not SYMBOL=URI, a symbol is not an upper-case pair, or a
            symbol is named twice.
    """
    pairs = [entry.split("=", 1) for entry in text.split(",") if entry.strip()]
    if not pairs or any(len(pair) != 2 or not pair[1].strip() for pair in pairs):
        raise ValueError(f"expected SYMBOL=URI[,SYMBOL=URI...], got {text!r}")
    symbols = [symbol.strip() for symbol, _ in pairs]
    for symbol in symbols:
        if not symbol.isalnum() or symbol.upper() != symbol:
            raise ValueError(f"expected an upper-case pair like BTCUSDT, got {symbol!r} in {text!r}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"a symbol is named twice in {text!r}")
    return {symbol: uri.strip() for symbol, (_, uri) in zip(symbols, pairs, strict=True)}
