"""Typed parameters loaded from params.yaml, the one source of truth for every stage.

Each stage reads one frozen dataclass. Loading is strict: an unknown key, a wrong type or an
invalid value fails with the key's dotted name and the reason, before any work starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from klinecast.errors import ParamsError

DEFAULT_PARAMS_PATH = Path("params.yaml")

#: Binance kline intervals that the archives publish, with their length.
INTERVALS: dict[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "3m": dt.timedelta(minutes=3),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "30m": dt.timedelta(minutes=30),
    "1h": dt.timedelta(hours=1),
    "2h": dt.timedelta(hours=2),
    "4h": dt.timedelta(hours=4),
    "6h": dt.timedelta(hours=6),
    "8h": dt.timedelta(hours=8),
    "12h": dt.timedelta(hours=12),
    "1d": dt.timedelta(days=1),
}

SEED_INDICATORS = (
    "ma_ratio_5",
    "ma_ratio_10",
    "ma_ratio_15",
    "ma_ratio_20",
    "rsi_7",
    "rsi_14",
    "rsi_21",
    "mfi_7",
    "mfi_14",
    "mfi_21",
)


@dataclass(frozen=True)
class DataParams:
    """Which archives `klinecast ingest` fetches and from where."""

    symbol: str = "BTCUSDT"
    interval: str = "1h"
    start: dt.date = dt.date(2017, 8, 1)
    #: None means through the last complete month, then the current month's daily archives.
    end: dt.date | None = None
    base_url: str = "https://data.binance.vision"

    def __post_init__(self) -> None:
        if not self.symbol.isalnum() or self.symbol.upper() != self.symbol:
            raise ParamsError(
                "symbol", f"expected an upper-case pair like BTCUSDT, got {self.symbol!r}"
            )
        if self.interval not in INTERVALS:
            raise ParamsError(
                "interval", f"expected one of {sorted(INTERVALS)}, got {self.interval!r}"
            )
        if self.end is not None and self.end < self.start:
            raise ParamsError("end", f"{self.end} is before data.start {self.start}")
        if not self.base_url:
            raise ParamsError("base_url", "must not be empty")

    @property
    def interval_delta(self) -> dt.timedelta:
        return INTERVALS[self.interval]


@dataclass(frozen=True)
class FeatureParams:
    """Which indicators `klinecast features` computes, and the history serving needs."""

    indicators: tuple[str, ...] = SEED_INDICATORS
    #: Candles of history after which a feature computed on a short window equals the one
    #: computed on full history to 1e-9 (measured by `klinecast features --measure`).
    min_history: int = 540

    def __post_init__(self) -> None:
        # Imported here because features.py imports this module for its types.
        from klinecast.features import indicator_lookback, parse_indicator

        if not self.indicators:
            raise ParamsError("indicators", "at least one indicator is required")
        if len(set(self.indicators)) != len(self.indicators):
            raise ParamsError("indicators", "lists an indicator twice")
        for name in self.indicators:
            try:
                parse_indicator(name)
            except ValueError as exc:
                raise ParamsError("indicators", str(exc)) from None
        longest = max(indicator_lookback(name) for name in self.indicators)
        if self.min_history <= longest:
            raise ParamsError(
                "min_history",
                f"{self.min_history} is not more than the longest indicator window ({longest} "
                "candles); run `klinecast features --measure` to measure it",
            )


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    data: DataParams = field(default_factory=DataParams)
    features: FeatureParams = field(default_factory=FeatureParams)


def load_params(path: Path | str = DEFAULT_PARAMS_PATH) -> Params:
    """Reads and validates params.yaml.

    Raises:
        ParamsError: the file is missing or unreadable, or a key is unknown or invalid.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), f"not valid YAML: {exc}") from None
    return params_from_mapping(raw or {})


def params_from_mapping(raw: object) -> Params:
    """Builds Params from an already parsed mapping (params.yaml's content)."""
    return _build(Params, raw, prefix="")


def _build(cls: type, raw: object, *, prefix: str):
    if not isinstance(raw, dict):
        raise ParamsError(prefix or "params", f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(
            _join(prefix, str(unknown[0])), f"unknown key; expected one of {sorted(fields)}"
        )
    values = {}
    for name, value in raw.items():
        key = _join(prefix, name)
        values[name] = _convert(hints[name], value, key=key)
    try:
        return cls(**values)
    except ParamsError as exc:
        raise ParamsError(_join(prefix, exc.key), exc.reason) from None


def _convert(hint, value, *, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key=key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ParamsError(key, f"expected a list, got {value!r}")
        return tuple(_convert(args[0], item, key=f"{key}[{i}]") for i, item in enumerate(value))
    if hint is dt.date:
        return _to_date(value, key=key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"params type {hint!r} of {key} is not supported")


def _to_date(value, *, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ParamsError(key, f"expected a date like 2018-01-01, got {value!r}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
