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
class SplitParams:
    """The in-sample span (tuning) and the out-of-sample span (evaluation), inclusive days."""

    in_sample_start: dt.date = dt.date(2018, 1, 1)
    in_sample_end: dt.date = dt.date(2021, 12, 31)
    out_of_sample_start: dt.date = dt.date(2022, 1, 1)
    out_of_sample_end: dt.date = dt.date(2022, 5, 31)

    def __post_init__(self) -> None:
        if self.in_sample_end < self.in_sample_start:
            raise ParamsError("in_sample_end", f"{self.in_sample_end} is before in_sample_start")
        if self.out_of_sample_end < self.out_of_sample_start:
            raise ParamsError(
                "out_of_sample_end", f"{self.out_of_sample_end} is before out_of_sample_start"
            )
        if self.out_of_sample_start <= self.in_sample_end:
            raise ParamsError(
                "out_of_sample_start",
                f"{self.out_of_sample_start} must come after in_sample_end {self.in_sample_end}, "
                "or tuning would see the evaluation hours",
            )


@dataclass(frozen=True)
class BacktestParams:
    """How the strategy trades a probability, and what it pays."""

    step_days: int = 30
    #: Taker fee per side, charged on every change of position (a flip pays two sides).
    fee: float = 0.001
    #: Flat while |prob_up - 0.5| <= neutral_band; 0 is the seed's always-in-the-market rule.
    neutral_band: float = 0.0
    coin_flip_seed: int = 0

    def __post_init__(self) -> None:
        if self.step_days < 1:
            raise ParamsError("step_days", f"must be at least 1, got {self.step_days}")
        if not 0 <= self.fee < 0.05:
            raise ParamsError("fee", f"expected a fraction per side in [0, 0.05), got {self.fee}")
        if not 0 <= self.neutral_band < 0.5:
            raise ParamsError("neutral_band", f"expected [0, 0.5), got {self.neutral_band}")


@dataclass(frozen=True)
class SearchSpace:
    """The seed's XGBoost search space; every entry is [low, high], inclusive."""

    n_estimators: tuple[int, int] = (350, 1000)
    max_depth: tuple[int, int] = (3, 10)
    learning_rate: tuple[float, float] = (0.01, 0.10)
    subsample: tuple[float, float] = (0.5, 0.9)
    colsample_bytree: tuple[float, float] = (0.5, 0.9)
    gamma: tuple[int, int] = (0, 20)
    look_back_days: tuple[int, int] = (30, 180)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            low, high = getattr(self, f.name)
            if low > high:
                raise ParamsError(f.name, f"low {low} is above high {high}")
        if self.look_back_days[0] < 1 or self.n_estimators[0] < 1 or self.max_depth[0] < 1:
            raise ParamsError(
                "look_back_days", "look_back_days, n_estimators and max_depth must be >= 1"
            )
        for name in ("subsample", "colsample_bytree"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ParamsError(name, f"must lie in (0, 1], got [{low}, {high}]")


@dataclass(frozen=True)
class TuneParams:
    """The Optuna study: TPE over the search space, median pruning over folds."""

    n_trials: int = 40
    seed: int = 42
    study_name: str = "klinecast"
    #: An SQLAlchemy URL; $KLINECAST_OPTUNA_STORAGE or `tune --storage` override it.
    storage: str = "sqlite:///optuna.db"
    #: Folds every trial runs before the median pruner may stop it.
    pruner_warmup_folds: int = 8
    pruner_startup_trials: int = 5
    search_space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ParamsError("n_trials", f"must be at least 1, got {self.n_trials}")
        if "://" not in self.storage:
            raise ParamsError(
                "storage", f"expected a URL like sqlite:///optuna.db, got {self.storage!r}"
            )


@dataclass(frozen=True)
class PublishParams:
    """Where models go, and the gate a model must pass to become `production`."""

    registry: str = "models/registry"
    model_name: str = "klinecast-btcusdt-1h"
    #: The model's out-of-sample return after fees must beat this baseline's by this much.
    gate_baseline: str = "buy_and_hold"
    gate_min_excess_return: float = 0.0

    def __post_init__(self) -> None:
        baselines = ("buy_and_hold", "always_short", "momentum", "coin_flip")
        if self.gate_baseline not in baselines:
            raise ParamsError(
                "gate_baseline", f"expected one of {list(baselines)}, got {self.gate_baseline!r}"
            )
        if (
            not self.model_name.replace("-", "").isalnum()
            or self.model_name != self.model_name.lower()
        ):
            raise ParamsError(
                "model_name",
                f"expected lower-case letters, digits and '-', got {self.model_name!r}",
            )


@dataclass(frozen=True)
class TradeParams:
    """The hourly trader: where it asks, how much it trades, when it stops, when it retrains."""

    broker: str = "paper"  # paper | testnet
    #: The InferenceService's (transformer's) base URL; $KLINECAST_INFERENCE_URL overrides it.
    inference_url: str = "http://klinecast-btcusdt-1h-transformer.klinecast.svc"
    protocol: str = "v1"
    #: SQLAlchemy URL of the ledger; $KLINECAST_LEDGER_URL overrides it.
    ledger: str = "sqlite:///ledger.db"
    quantity: float = 0.001  # base asset per position
    max_quantity: float = 0.01  # the cap on any position
    kill_switch_return: float = -0.20  # halt when cumulative return falls below this
    retrain_min_accuracy: float = 0.60
    retrain_window: int = 24  # trades
    retrain_cooldown_hours: int = 24

    def __post_init__(self) -> None:
        if self.broker not in ("paper", "testnet"):
            raise ParamsError("broker", f"expected paper or testnet, got {self.broker!r}")
        if self.protocol not in ("v1", "v2"):
            raise ParamsError("protocol", f"expected v1 or v2, got {self.protocol!r}")
        if not 0 < self.quantity <= self.max_quantity:
            raise ParamsError(
                "quantity", f"expected 0 < quantity <= max_quantity, got {self.quantity}"
            )
        if not -1 < self.kill_switch_return < 0:
            raise ParamsError(
                "kill_switch_return", f"expected (-1, 0), got {self.kill_switch_return}"
            )
        if not 0 < self.retrain_min_accuracy <= 1 or self.retrain_window < 1:
            raise ParamsError("retrain_min_accuracy", "expected (0, 1] and retrain_window >= 1")


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    data: DataParams = field(default_factory=DataParams)
    features: FeatureParams = field(default_factory=FeatureParams)
    split: SplitParams = field(default_factory=SplitParams)
    backtest: BacktestParams = field(default_factory=BacktestParams)
    tune: TuneParams = field(default_factory=TuneParams)
    publish: PublishParams = field(default_factory=PublishParams)
    trade: TradeParams = field(default_factory=TradeParams)


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
        if Ellipsis not in args and len(value) != len(args):
            raise ParamsError(key, f"expected {len(args)} values [low, high], got {value!r}")
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


def flatten(raw: dict) -> dict[str, object]:
    """params.yaml's sections as flat `section_key` names (the KFP pipeline's parameters).

    An empty value (null) becomes "" because a pipeline parameter has one fixed type;
    `unflatten` turns it back.
    """
    return {
        f"{section}_{key}": "" if value is None else value
        for section, values in raw.items()
        for key, value in (values or {}).items()
    }


def unflatten(flat: dict[str, object]) -> dict:
    """The params.yaml mapping of flat names (a KFP run's parameters).

    Undoes what the trip through KFP does to values: "" is null where the key may be empty, and
    whole numbers that arrive as floats (KFP carries list and struct numbers as doubles) are
    integers again where params.yaml wants integers. Anything else is left for the strict loader.
    """
    nested: dict[str, dict] = {}
    hints = typing.get_type_hints(Params)
    for name, value in flat.items():
        section = next((s for s in hints if name.startswith(f"{s}_")), None)
        if section is None:
            raise ParamsError(name, f"does not start with a section of {sorted(hints)}")
        key = name[len(section) + 1 :]
        hint = typing.get_type_hints(hints[section]).get(key)
        nested.setdefault(section, {})[key] = _from_kfp(hint, value)
    return nested


def _from_kfp(hint, value):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value == "" and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_kfp(inner, value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        fields = typing.get_type_hints(hint)
        return {k: _from_kfp(fields.get(k), v) for k, v in value.items()}
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return [_from_kfp(args[0], item) for item in value]
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
