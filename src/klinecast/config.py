"""Typed parameters loaded from params.yaml, the one source of truth for every stage.

Each stage reads one frozen dataclass. Loading is strict: an unknown key, a wrong type or an
invalid value fails with the key's dotted name and the reason, before any work starts. The
KLINECAST_* environment variables of `klinecast.environment.PARAMS_OVERRIDES` override their keys once, at loading, so
the CLI, dvc.yaml's stages and the KFP components all see the same values.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from klinecast.environment import PARAMS_OVERRIDES
from klinecast.errors import KlinecastError, ParamsError
from klinecast.indicators import indicator_lookback, is_indicator, parse_indicator, spans_gaps

DEFAULT_PARAMS_PATH = Path("params.yaml")

#: Keys that were renamed, with what the loader says instead of "unknown key".
RENAMED = {
    "data.symbol": "was renamed data.symbols, a list of pairs: write `symbols: [BTCUSDT]`",
}


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

Problems = Iterator[tuple[str, str]]
#: What a rule may hold: long_only is flat instead of short (a spot account).
SIDES = ("long_short", "long_only")
#: How a fold's training window is cut: its last look_back_days, or all the history before it.
TRAIN_WINDOWS = ("sliding", "anchored")
#: How training rows are weighed: equally, or by their label's average uniqueness.
SAMPLE_WEIGHTS = ("equal", "uniqueness")
#: The classifier: XGBoost's trees, or its linear booster on standardised features.
BOOSTERS = ("gbtree", "gblinear")
#: A rule with no primary: the model proposes every bet itself (no meta-labels).
NO_PRIMARY = "none"
#: The indicator family whose rules may be a primary (`trend_50d`: long above the 50-day
#: average, decided daily).
PRIMARY_FAMILY = "trend"


class _Checked:
    """A params section that checks itself: `problems()` yields every (key, reason)."""

    def problems(self) -> Problems:
        return iter(())

    def __post_init__(self) -> None:
        found = list(self.problems())
        if found:
            raise ParamsError.of(found)


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
#: The seed's ten, then one day of each newer family, and the calendar.
DEFAULT_INDICATORS = SEED_INDICATORS + (
    "log_return_1",
    "log_return_24",
    "rvol_24",
    "taker_buy_24",
    "volume_z_24",
    "range_pos_24",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    # the day-scale families: a month's and a week's return, the distance from the 50- and
    # 200-day averages, a month's volatility, the drawdown and the rally of a quarter, and the
    # last day's volume against a month's
    "log_return_7d",
    "log_return_30d",
    "ma_ratio_50d",
    "ma_ratio_200d",
    "rvol_30d",
    "drawdown_90d",
    "rally_90d",
    "volume_ratio_30d",
)


@dataclass(frozen=True)
class DataParams(_Checked):
    """Which archives `klinecast ingest` fetches and from where.

    Every stage fans out over `symbols` (`klinecast.book.Book`); a stage that works on one
    symbol takes `Book.for_symbol(symbol)`, whose data.symbols holds that symbol alone.
    """

    symbols: tuple[str, ...] = ("BTCUSDT",)
    interval: str = "1h"
    start: dt.date = dt.date(2017, 8, 1)
    #: None means through the last complete month, then the current month's daily archives.
    end: dt.date | None = None
    base_url: str = "https://data.binance.vision"

    @property
    def symbol(self) -> str:
        """The symbol of params narrowed to one (`Book.for_symbol`), as a symbol's stages run.

        Raises:
            KlinecastError: these params are a whole book's, not one symbol's.
        """
        try:
            (symbol,) = self.symbols
        except ValueError:
            raise KlinecastError(
                f"data.symbols lists {', '.join(self.symbols)}; this step works on one of "
                "them: pass --symbol"
            ) from None
        return symbol

    def problems(self) -> Problems:
        if not self.symbols:
            yield "symbols", "lists no symbol; expected pairs like [BTCUSDT]"
        for symbol in self.symbols:
            if not symbol.isalnum() or symbol.upper() != symbol:
                yield "symbols", f"expected upper-case pairs like BTCUSDT, got {symbol!r}"
        if len(set(self.symbols)) != len(self.symbols):
            yield "symbols", f"lists a symbol twice: {list(self.symbols)}"
        if self.interval not in INTERVALS:
            yield "interval", f"expected one of {sorted(INTERVALS)}, got {self.interval!r}"
        if self.end is not None and self.end < self.start:
            yield "end", f"{self.end} is before data.start {self.start}"
        if not self.base_url:
            yield "base_url", "must not be empty"

    @property
    def interval_delta(self) -> dt.timedelta:
        return INTERVALS[self.interval]


@dataclass(frozen=True)
class FeatureParams(_Checked):
    """Which indicators `klinecast features` computes, and the history serving needs."""

    indicators: tuple[str, ...] = DEFAULT_INDICATORS
    #: Candles of history after which a feature computed on a short window equals the one
    #: computed on full history to 1e-9 (measured by `klinecast features --measure`).
    min_history: int = 4900
    #: Indicators of `reference` joined to every symbol's rows at the same hour (cross-asset
    #: features, columns `<reference>_<indicator>` in lower case); empty: none.
    cross_asset: tuple[str, ...] = ()
    reference: str = "BTCUSDT"

    @property
    def cross_asset_columns(self) -> tuple[str, ...]:
        return tuple(cross_asset_column(self.reference, name) for name in self.cross_asset)

    @property
    def names(self) -> tuple[str, ...]:
        """The model's features: the symbol's own indicators, then the cross-asset ones."""
        return (*self.indicators, *self.cross_asset_columns)

    def problems(self) -> Problems:
        for name in self.cross_asset:
            try:
                parse_indicator(name)
            except ValueError as exc:
                yield "cross_asset", str(exc)
        if len(set(self.cross_asset)) != len(self.cross_asset):
            yield "cross_asset", "lists an indicator twice"
        if not self.reference.isalnum() or self.reference.upper() != self.reference:
            yield "reference", f"expected an upper-case pair like BTCUSDT, got {self.reference!r}"
        if not self.indicators:
            yield "indicators", "at least one indicator is required"
            return
        if len(set(self.indicators)) != len(self.indicators):
            yield "indicators", "lists an indicator twice"
        known = [name for name in self.cross_asset if is_indicator(name)]
        for name in self.indicators:
            try:
                parse_indicator(name)
            except ValueError as exc:
                yield "indicators", str(exc)
            else:
                known.append(name)
        # (the reference's candles come in the same window as the symbol's, in serving too)
        longest = max((indicator_lookback(name) for name in known), default=0)
        if self.min_history <= longest:
            yield (
                "min_history",
                f"{self.min_history} is not more than the longest indicator window ({longest} "
                "candles); run `klinecast features --measure` to measure it",
            )


@dataclass(frozen=True)
class Span:
    """Whole UTC days, first_day to last_day inclusive: the hours in [start, stop)."""

    first_day: dt.date
    last_day: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first_day, dt.time(), tzinfo=dt.UTC)

    @property
    def stop(self) -> dt.datetime:
        """Midnight after the last day (exclusive)."""
        return dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    @property
    def days(self) -> int:
        """How many days the span holds, both ends included."""
        return (self.last_day - self.first_day).days + 1

    def holds(self, index):
        """Which timestamps of a UTC index fall inside the span (a boolean array)."""
        return (index >= self.start) & (index < self.stop)

    def __str__(self) -> str:
        return f"{self.first_day} .. {self.last_day}"


@dataclass(frozen=True)
class SplitParams(_Checked):
    """The in-sample span (tuning) and the out-of-sample span (evaluation), inclusive days."""

    in_sample_start: dt.date = dt.date(2018, 1, 1)
    in_sample_end: dt.date = dt.date(2021, 12, 31)
    out_of_sample_start: dt.date = dt.date(2022, 1, 1)
    out_of_sample_end: dt.date = dt.date(2022, 5, 31)

    @property
    def in_sample(self) -> Span:
        return Span(self.in_sample_start, self.in_sample_end)

    @property
    def out_of_sample(self) -> Span:
        return Span(self.out_of_sample_start, self.out_of_sample_end)

    def problems(self) -> Problems:
        if self.in_sample_end < self.in_sample_start:
            yield "in_sample_end", f"{self.in_sample_end} is before in_sample_start"
        if self.out_of_sample_end < self.out_of_sample_start:
            yield "out_of_sample_end", f"{self.out_of_sample_end} is before out_of_sample_start"
        if self.out_of_sample_start <= self.in_sample_end:
            yield (
                "out_of_sample_start",
                f"{self.out_of_sample_start} must come after in_sample_end {self.in_sample_end}, "
                "or tuning would see the evaluation hours",
            )


@dataclass(frozen=True)
class BacktestParams(_Checked):
    """The walk-forward, what trading costs, the baselines, and the statistics of the result."""

    step_days: int = 90
    #: Taker fee per side, charged on every change of position (a flip pays two sides).
    fee: float = 0.001
    #: Slippage per side in basis points, paid beside the fee on every change: what a market
    #: order gives up to the spread and the book it walks. BTCUSDT spot's quoted spread is one
    #: tick (0.01 USDT, under 0.01 bp at 2018-2022 prices); 1 bp is a conservative allowance
    #: for a small market order in a fast hour.
    slippage_bps: float = 1.0
    coin_flip_seed: int = 0
    #: Resamples of the stationary bootstrap behind each p-value (the Monte-Carlo error of a
    #: p-value near 0.05 is about 0.003 at 5,000).
    bootstrap_reps: int = 5000
    #: The trend baselines: long when the close is above its N-day simple moving average,
    #: decided once a day at 00:00 UTC, flat otherwise.
    trend_days: tuple[int, ...] = (20, 50, 100, 200)
    #: The volatility-targeted buy-and-hold: exposure = target / realised annual volatility of
    #: the last vol_lookback_days, capped at 1, decided once a day.
    vol_target: float = 0.40
    vol_lookback_days: int = 30

    @property
    def slippage(self) -> float:
        """Slippage per side as a fraction."""
        return self.slippage_bps / 10_000

    @property
    def cost(self) -> float:
        """What one unit of position change costs: the fee and the slippage."""
        return self.fee + self.slippage

    def problems(self) -> Problems:
        if self.step_days < 1:
            yield "step_days", f"must be at least 1, got {self.step_days}"
        if not 0 <= self.fee < 0.05:
            yield "fee", f"expected a fraction per side in [0, 0.05), got {self.fee}"
        if not 0 <= self.slippage_bps < 500:
            yield (
                "slippage_bps",
                f"expected basis points per side in [0, 500), got {self.slippage_bps}",
            )
        if self.bootstrap_reps < 100:
            yield "bootstrap_reps", f"expected at least 100, got {self.bootstrap_reps}"
        if not self.trend_days or any(n < 2 for n in self.trend_days):
            yield (
                "trend_days",
                f"expected one or more periods of at least 2 days, got {list(self.trend_days)}",
            )
        if len(set(self.trend_days)) != len(self.trend_days):
            yield "trend_days", f"lists a period twice: {list(self.trend_days)}"
        if not 0 < self.vol_target <= 5:
            yield "vol_target", f"expected an annual volatility in (0, 5], got {self.vol_target}"
        if self.vol_lookback_days < 2:
            yield "vol_lookback_days", f"must be at least 2, got {self.vol_lookback_days}"


@dataclass(frozen=True)
class SearchSpace(_Checked):
    """What tuning searches: the classifier, its training window, the label's horizon and the
    trading rule.

    A range is [low, high], inclusive; a range of one value ([x, x]) fixes a lever. `booster`,
    `side`, `train_window`, `cadence_hours`, `sample_weights` and `primary` list the choices. exit_band is drawn in its range and
    capped at the trial's entry_band.
    """

    #: choices: gbtree (trees), gblinear (a logistic regression fitted by coordinate descent
    #: on features standardised on each fit's training rows)
    booster: tuple[str, ...] = ("gbtree",)
    n_estimators: tuple[int, int] = (100, 400)
    max_depth: tuple[int, int] = (2, 6)
    learning_rate: tuple[float, float] = (0.01, 0.10)
    subsample: tuple[float, float] = (0.5, 0.9)
    colsample_bytree: tuple[float, float] = (0.5, 0.9)
    gamma: tuple[float, float] = (0.0, 5.0)
    #: the linear booster's L1 and L2 penalties on its weights, per row of standardised
    #: features (XGBoost's reg_alpha, reg_lambda); the trees keep XGBoost's defaults
    reg_alpha: tuple[float, float] = (0.0, 0.0)
    reg_lambda: tuple[float, float] = (0.0, 0.0)
    #: sliding: the last look_back_days before each fold; anchored: all the history before it
    #: (look_back_days is then how much the first fold needs at least)
    train_window: tuple[str, ...] = ("sliding", "anchored")
    look_back_days: tuple[int, int] = (90, 365)
    horizon_hours: tuple[int, int] = (1, 168)
    side: tuple[str, ...] = ("long_only",)
    entry_band: tuple[float, float] = (0.0, 0.15)
    exit_band: tuple[float, float] = (0.0, 0.10)
    min_hold_hours: tuple[int, int] = (1, 168)
    #: the rule may change position only at hours that are a multiple of this (UTC)
    cadence_hours: tuple[int, ...] = (1, 4, 24)
    #: the features each fit keeps, ranked on its own training rows; [0, 0]: every feature
    n_features: tuple[int, int] = (0, 0)
    #: trees per boosting round, each on its own subsample, averaged (a bag in one model)
    parallel_trees: tuple[int, int] = (1, 1)
    #: choices: equal, or uniqueness (each row by its label's average uniqueness)
    sample_weights: tuple[str, ...] = ("equal",)
    #: choices: none, or a trend rule among features.indicators (e.g. trend_50d) that proposes
    #: each bet, the model learning which to take (meta-labels; side must be long_only)
    primary: tuple[str, ...] = (NO_PRIMARY,)

    #: The levers drawn from a list of choices rather than a range.
    CHOICES = ("booster", "train_window", "side", "cadence_hours", "sample_weights", "primary")
    #: The ranges drawn on a log scale: each doubling is as likely as the next (1-2 hours as
    #: likely as 84-168), where a uniform draw would put six in seven horizons beyond a day.
    LOG_SCALE = ("learning_rate", "look_back_days", "horizon_hours", "min_hold_hours")

    def problems(self) -> Problems:
        for f in dataclasses.fields(self):
            if f.name in self.CHOICES:
                continue
            low, high = getattr(self, f.name)
            if low > high:
                yield f.name, f"low {low} is above high {high}"
            elif f.name in self.LOG_SCALE and low <= 0:
                yield f.name, f"is drawn on a log scale: its low must be above 0, got {low}"
        if not self.side:
            yield "side", f"lists no side; expected some of {list(SIDES)}"
        for side in self.side:
            if side not in SIDES:
                yield "side", f"unknown side {side!r}; expected some of {list(SIDES)}"
        if not self.train_window or set(self.train_window) - set(TRAIN_WINDOWS):
            yield (
                "train_window",
                f"expected some of {list(TRAIN_WINDOWS)}, got {list(self.train_window)}",
            )
        if not self.cadence_hours or any(not 1 <= k <= 24 or 24 % k for k in self.cadence_hours):
            yield (
                "cadence_hours",
                f"expected divisors of 24 (1, 2, 3, 4, 6, 8, 12, 24), got {list(self.cadence_hours)}",
            )
        for name in ("entry_band", "exit_band"):
            low, high = getattr(self, name)
            if not (0 <= low and high < 0.5):
                yield name, f"must lie in [0, 0.5), got [{low}, {high}]"
        if self.exit_band[1] > self.entry_band[1]:
            yield (
                "exit_band",
                f"its high {self.exit_band[1]} is above entry_band's high {self.entry_band[1]}; "
                "a position is left at the exit band, so it must be the smaller (hysteresis)",
            )
        if self.horizon_hours[0] < 1:
            yield "horizon_hours", f"must be >= 1 (hours ahead), got {list(self.horizon_hours)}"
        if self.min_hold_hours[0] < 1:
            yield "min_hold_hours", f"must be >= 1, got {list(self.min_hold_hours)}"
        for name in ("look_back_days", "n_estimators", "max_depth"):
            if getattr(self, name)[0] < 1:
                yield name, f"must be >= 1, got {list(getattr(self, name))}"
        for name in ("gamma", "reg_alpha", "reg_lambda"):
            if getattr(self, name)[0] < 0:
                yield name, f"must be >= 0, got {list(getattr(self, name))}"
        if not self.booster or set(self.booster) - set(BOOSTERS):
            yield "booster", f"expected some of {list(BOOSTERS)}, got {list(self.booster)}"
        if self.n_features[0] < 0 or (self.n_features[0] == 0 and self.n_features[1] != 0):
            yield (
                "n_features",
                f"expected [0, 0] (every feature) or a range of at least 1, got "
                f"{list(self.n_features)}",
            )
        if self.parallel_trees[0] < 1:
            yield "parallel_trees", f"must be >= 1, got {list(self.parallel_trees)}"
        if not self.sample_weights or set(self.sample_weights) - set(SAMPLE_WEIGHTS):
            yield (
                "sample_weights",
                f"expected some of {list(SAMPLE_WEIGHTS)}, got {list(self.sample_weights)}",
            )
        for name in ("subsample", "colsample_bytree"):
            low, high = getattr(self, name)
            if not (0 < low and high <= 1):
                yield name, f"must lie in (0, 1], got [{low}, {high}]"
        yield from _primary_problems(self.primary, self.side)


def _primary_problems(primary: tuple[str, ...], sides: tuple[str, ...]) -> Problems:
    rules = [name for name in primary if name != NO_PRIMARY]
    wrong = [name for name in rules if not _is_primary(name)]
    if not primary or wrong:
        yield (
            "primary",
            f"expected {NO_PRIMARY} or day-scale {PRIMARY_FAMILY} rules such as trend_50d, got "
            f"{list(wrong or primary)}",
        )
    if rules and set(sides) != {"long_only"}:
        yield (
            "side",
            f"a primary ({', '.join(rules)}) proposes long bets only: side must be "
            f"[long_only], got {list(sides)}",
        )


def _is_primary(name: str) -> bool:
    """A day-scale trend rule (trend_50d): decided daily over days on the clock."""
    return is_indicator(name) and parse_indicator(name)[0] == PRIMARY_FAMILY and spans_gaps(name)


#: What tuning maximises over the in-sample walk-forward, after costs: the annualised Sharpe
#: ratio, the information ratio against buy-and-hold (the Sharpe of the hourly differences),
#: or the cumulative return (which mostly rewards exposure in a rising market).
OBJECTIVES = ("sharpe_after_fees", "information_ratio", "return_after_fees")
#: A model per symbol (its own study, model and gate), or one model trained on every symbol's
#: rows and traded by each symbol's rule (its study maximises the book's objective).
POOLINGS = ("per_symbol", "pooled")


@dataclass(frozen=True)
class TuneParams(_Checked):
    """The Optuna study: TPE over the search space, every trial run to its end, in seeded
    batches of `workers` trials (the same data, params and seed give the same study)."""

    objective: str = "sharpe_after_fees"
    pooling: str = "per_symbol"
    n_trials: int = 40
    #: Processes (locally: one batch of asks at a time) or pods (the KFP pipeline's
    #: ParallelFor, sharing one study; not reproducible) that run the trials.
    workers: int = 2
    #: The KFP pipelines' symbol branches that run at once (ParallelFor's parallelism);
    #: `dvc repro` runs the symbols one after another.
    symbols_in_parallel: int = 2
    seed: int = 42
    study_name: str = "klinecast"
    #: An SQLAlchemy URL; $KLINECAST_OPTUNA_STORAGE or `tune --storage` override it.
    storage: str = "sqlite:///optuna.db"
    search_space: SearchSpace = field(default_factory=SearchSpace)
    #: The last days of the in-sample span that the search never scores: the chosen trial is
    #: walked forward over them afterwards (the inner hold-out); 0: none.
    holdout_days: int = 180
    #: How many of the search's best trials the hold-out scores; the best there is chosen
    #: (1: the search's best, confirmed or not by the hold-out).
    holdout_candidates: int = 1

    def problems(self) -> Problems:
        if self.objective not in OBJECTIVES:
            yield "objective", f"expected one of {list(OBJECTIVES)}, got {self.objective!r}"
        if self.pooling not in POOLINGS:
            yield "pooling", f"expected one of {list(POOLINGS)}, got {self.pooling!r}"
        if self.n_trials < 1:
            yield "n_trials", f"must be at least 1, got {self.n_trials}"
        if self.workers < 1:
            yield "workers", f"must be at least 1, got {self.workers}"
        if self.symbols_in_parallel < 1:
            yield "symbols_in_parallel", f"must be at least 1, got {self.symbols_in_parallel}"
        if self.holdout_days < 0:
            yield "holdout_days", f"must be >= 0, got {self.holdout_days}"
        if self.holdout_candidates < 1:
            yield "holdout_candidates", f"must be at least 1, got {self.holdout_candidates}"
        if "://" not in self.storage:
            yield "storage", f"expected a URL like sqlite:///optuna.db, got {self.storage!r}"


@dataclass(frozen=True)
class ChallengerParams(_Checked):
    """A version's way into production beside a champion: it trades in shadow first (the
    trader asks the challenger's InferenceService each hour and books its calls on paper,
    after the same costs), and `klinecast challenger decide` promotes it once its shadow hours
    say it did not do worse.

    The rule: over the settled days the challenger and the champion both traded (at least
    min_hours), d is the challenger's daily return less the champion's. Promote when the
    one-sided lower bound of d's mean at `confidence` is at least -max_daily_shortfall; reject
    when the upper bound is below it (worse, and sure of it); else keep shadowing.
    """

    #: A version that passes its gate becomes the challenger while a production version exists
    #: (false: production moves to it at once). The first version of a model has no champion to
    #: shadow: it is promoted when it passes.
    shadow_passed: bool = True
    #: A version its gate refused becomes the challenger too, to gather live evidence for the
    #: next decision (its shadow hours are one more look at unseen data).
    shadow_refused: bool = False
    min_hours: int = 168  # settled shadow hours before the rule decides
    #: How much less a day the challenger may earn than the champion, on average (0.0005: 0.05 %)
    max_daily_shortfall: float = 0.0
    confidence: float = 0.90  # of the one-sided bounds of the mean daily difference

    def problems(self) -> Problems:
        if self.min_hours < 48:
            yield "min_hours", f"must be >= 48 (the rule needs two whole days), got {self.min_hours}"
        if self.max_daily_shortfall < 0:
            yield "max_daily_shortfall", f"must be >= 0, got {self.max_daily_shortfall}"
        if not 0.5 <= self.confidence < 1:
            yield "confidence", f"expected [0.5, 1), got {self.confidence}"


@dataclass(frozen=True)
class RolloutParams(_Checked):
    """How `klinecast deploy` (and rollback, promote, challenger promote) moves the book's
    InferenceService to new versions: at once, or as a canary.

    A canary follows KServe's rollout strategy, which KServe supports in Serverless mode only,
    so canary_steps renders the InferenceService in Serverless mode with tag routing. Each step
    sets canaryTrafficPercent on both components, waits (watching the object) until KServe
    reports the new revision ready and the traffic split, then sends probe_requests to the new
    revision's own URL (tag `latest`): an error rate above max_error_rate or a p99 above
    max_p99_ms rolls back (canaryTrafficPercent 0, then the previous versions), else the next
    step; after the last, the new revision takes all traffic.
    """

    #: The new revision's share of traffic at each step, in percent, e.g. [10, 50]; [] deploys
    #: at once (the InferenceService stays in RawDeployment mode).
    canary_steps: tuple[int, ...] = ()
    probe_requests: int = 40  # sent to the new revision at each step
    max_error_rate: float = 0.02  # of the probe's requests that failed (not 200)
    max_p99_ms: float = 500.0  # of the probe's requests
    #: How long a step waits for KServe to report the revision ready and the split applied.
    ready_timeout_seconds: float = 600.0

    def problems(self) -> Problems:
        steps = list(self.canary_steps)
        if steps != sorted(set(steps)) or not all(0 < s < 100 for s in steps):
            yield "canary_steps", f"expected increasing percents in (0, 100), got {steps}"
        if self.probe_requests < 1:
            yield "probe_requests", f"must be >= 1, got {self.probe_requests}"
        if not 0 <= self.max_error_rate < 1:
            yield "max_error_rate", f"expected [0, 1), got {self.max_error_rate}"
        if self.max_p99_ms <= 0 or self.ready_timeout_seconds <= 0:
            yield "max_p99_ms", "max_p99_ms and ready_timeout_seconds must be > 0"

    @property
    def canary(self) -> bool:
        return bool(self.canary_steps)


@dataclass(frozen=True)
class PublishParams(_Checked):
    """Where models go, and the gate a model must pass to become `production`.

    All three must hold, out of sample and after costs: the model beats every baseline its
    side could hold, its primary's own rule included (klinecast.research.baselines.declared),
    by gate_min_excess_return; the
    largest of their one-sided bootstrap p-values is at most gate_max_p_value (an
    intersection-union test); and the model is not degenerate (enough splits over enough
    features, and a rule that trades).
    """

    registry: str = "models/registry"
    #: Each symbol's model in the registry: `{symbol}` (lower case) and `{interval}` are filled
    #: in (`klinecast.book.Book.model_name`), so adding a symbol renames no other model.
    model_name: str = "klinecast-{symbol}-{interval}"
    #: The InferenceService that answers for every symbol of the book (its transformer's model).
    service_name: str = "klinecast"
    gate_min_excess_return: float = 0.0
    gate_max_p_value: float = 0.05
    #: Below either, the final tree model is degenerate: it has learned next to nothing.
    min_splits: int = 50
    min_features_used: int = 3
    #: A linear model (no splits) is degenerate with a weight on fewer features than this: one
    #: weight is already a rule (the planted edges' oracles are one-feature rules).
    min_weights: int = 1
    #: ... and a rule that trades: at least this many position changes out of sample.
    min_trades: int = 1
    #: How a version beside a production one gets there: shadow, then the promotion rule.
    challenger: ChallengerParams = field(default_factory=ChallengerParams)
    #: How deploy moves the book's InferenceService: at once, or a canary in steps.
    rollout: RolloutParams = field(default_factory=RolloutParams)

    def problems(self) -> Problems:
        if not 0 < self.gate_max_p_value <= 1:
            yield "gate_max_p_value", f"expected (0, 1], got {self.gate_max_p_value}"
        for name in ("min_splits", "min_features_used", "min_weights", "min_trades"):
            if getattr(self, name) < 0:
                yield name, f"must be >= 0, got {getattr(self, name)}"
        yield from _model_name_problems(self.model_name)
        name = self.service_name
        if not _is_dns_label(name):
            yield "service_name", f"expected lower-case letters, digits and '-', got {name!r}"


#: What publish.model_name may fill in.
MODEL_NAME_FIELDS = ("symbol", "interval")


def _model_name_problems(pattern: str) -> Problems:
    import string

    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as exc:
        yield "model_name", f"{pattern!r} is not a pattern like klinecast-{{symbol}}-{{interval}}: {exc}"
        return
    if "symbol" not in fields:
        yield (
            "model_name",
            f"{pattern!r} names no {{symbol}}: it is each symbol's model name, like "
            "klinecast-{symbol}-{interval}. Models published under a fixed name are renamed by "
            f"`klinecast registry migrate --old-name {pattern}`",
        )
    elif set(fields) - set(MODEL_NAME_FIELDS):
        yield "model_name", f"{pattern!r}: only {{symbol}} and {{interval}} are filled in"
    elif not _is_dns_label(pattern.format(symbol="btcusdt", interval="1h")):
        yield "model_name", f"expected lower-case letters, digits and '-', got {pattern!r}"


def _is_dns_label(name: str) -> bool:
    return bool(name) and name.replace("-", "").isalnum() and name == name.lower()


@dataclass(frozen=True)
class PortfolioParams(_Checked):
    """How the symbols' books combine: the share of capital each gets.

    The portfolio's hourly return is the weighted sum of the symbols' after-cost returns
    (capital split at the start, never rebalanced); the baselines combine the same way, and the
    portfolio passes its own gate (publish.gate_*), beside each symbol's.
    """

    #: symbol -> share of capital, summing to 1; empty: equal capital per symbol.
    weights: dict[str, float] = field(default_factory=dict)

    def problems(self) -> Problems:
        for symbol, weight in self.weights.items():
            if not 0 <= weight <= 1:
                yield "weights", f"{symbol}: expected a share of capital in [0, 1], got {weight}"
        if self.weights and abs(sum(self.weights.values()) - 1) > 1e-9:
            yield "weights", f"must sum to 1, got {sum(self.weights.values()):.6g}"


@dataclass(frozen=True)
class OnlineParams(_Checked):
    """The Feast online feature store (Redis) that serves features by symbol."""

    #: Feast's Redis connection string (host:port[,db=N,password=...]); $KLINECAST_REDIS overrides.
    redis: str = "localhost:6379"
    #: The Feast registry: a path or s3://...; $KLINECAST_FEAST_REGISTRY overrides.
    registry: str = "build/feast/registry.db"
    #: Feast's project, which prefixes every key in Redis; $KLINECAST_FEAST_PROJECT overrides.
    project: str = "klinecast"
    #: A symbol request is refused (503) once the candle after the store's newest one closed
    #: this many minutes ago and the sync has not written it.
    stale_after_minutes: int = 15
    #: The transformer's connect and read timeout for the store, in milliseconds: a store that
    #: is down or hung costs a symbol request at most this (503), never the whole server.
    timeout_ms: int = 250

    def problems(self) -> Problems:
        if not self.redis:
            yield "redis", "must not be empty (host:port)"
        if not self.project.replace("_", "").isalnum():
            yield "project", f"expected letters, digits and '_', got {self.project!r}"
        if not 0 <= self.stale_after_minutes <= 24 * 60:
            yield "stale_after_minutes", f"expected 0 .. 1440, got {self.stale_after_minutes}"
        if not 10 <= self.timeout_ms <= 10_000:
            yield "timeout_ms", f"expected 10 .. 10000 (milliseconds), got {self.timeout_ms}"


@dataclass(frozen=True)
class TradeParams(_Checked):
    """The hourly trader: where it asks, how much it trades, when it stops, when it retrains."""

    broker: str = "paper"  # paper | testnet
    #: The InferenceService's (transformer's) base URL; $KLINECAST_INFERENCE_URL overrides it.
    inference_url: str = "http://klinecast-transformer.klinecast.svc"
    #: The challenger's InferenceService (`klinecast manifest` renders it as
    #: <service_name>-challenger), asked each hour for the shadow book; "" asks none.
    #: $KLINECAST_CHALLENGER_URL overrides it.
    challenger_url: str = ""
    protocol: str = "v1"
    #: symbol: ask by symbol (the online store's features); candles: send the recent candles.
    request: str = "symbol"
    #: SQLAlchemy URL of the ledger; $KLINECAST_LEDGER_URL overrides it.
    ledger: str = "sqlite:///ledger.db"
    quantity: float = 0.001  # base asset per position
    max_quantity: float = 0.01  # the cap on any position
    #: symbol -> its own cap (base asset: 0.01 BTC is not 0.01 XRP); a symbol not named has
    #: max_quantity. `Book.for_symbol` applies it.
    max_quantities: dict[str, float] = field(default_factory=dict)
    #: Quote currency (USDT) the book trades; each symbol gets capital x its portfolio weight
    #: and opens a position worth that at the decision's close (at most max_quantity of its
    #: base asset). 0: each symbol trades `quantity` of its base asset.
    capital: float = 0.0
    kill_switch_return: float = -0.20  # halt a symbol when its cumulative return falls below this
    #: halt every symbol when the book's (the weighted symbols') cumulative return falls below this
    book_kill_switch_return: float = -0.20
    #: The smallest tolerance (base asset) of the difference between the ledger's position and
    #: the exchange's; a symbol's is one step of its LOT_SIZE filter when that is larger.
    #: Beyond it the symbol halts until `trade resolve`.
    reconcile_tolerance: float = 0.00001
    #: How long a cycle waits for another cycle of the same symbol before it gives up ("busy").
    lock_wait_seconds: float = 120.0
    #: Binance REST: how long one call may take before it counts as failed (an order POST
    #: that times out is looked up, never resent blindly).
    exchange_timeout_seconds: float = 10.0
    #: Binance's recvWindow, sent with every signed request: the exchange refuses a request that
    #: reaches its matching engine later than its timestamp plus this. An order POST in doubt
    #: is sent again only once this has passed (by the exchange's clock) and a second lookup
    #: still finds nothing. Binance recommends 5000 or less; 60000 at most.
    recv_window_ms: float = 5000.0
    #: The symbol's filters (exchangeInfo) are fetched every cycle; when a fetch fails, the
    #: last ones fetched are used while younger than this.
    filters_max_age_hours: float = 24.0
    retrain_min_accuracy: float = 0.60
    retrain_window: int = 24  # trades
    retrain_cooldown_hours: int = 24
    #: Fewer traded hours than this get no PSI ("too few samples"): a handful says nothing.
    drift_min_samples: int = 48

    def problems(self) -> Problems:
        if self.broker not in ("paper", "testnet"):
            yield "broker", f"expected paper or testnet, got {self.broker!r}"
        if self.protocol not in ("v1", "v2"):
            yield "protocol", f"expected v1 or v2, got {self.protocol!r}"
        if self.request not in ("symbol", "candles"):
            yield "request", f"expected symbol or candles, got {self.request!r}"
        if self.capital < 0:
            yield "capital", f"must be >= 0 (0: trade.quantity), got {self.capital}"
        if not 0 < self.quantity <= self.max_quantity:
            yield "quantity", f"expected 0 < quantity <= max_quantity, got {self.quantity}"
        for symbol, cap in self.max_quantities.items():
            if not cap > 0 or (self.capital == 0 and cap < self.quantity):
                yield (
                    "max_quantities",
                    f"{symbol}: expected a cap above 0 (and, with capital 0, at least quantity "
                    f"{self.quantity}), got {cap}",
                )
        for name in ("kill_switch_return", "book_kill_switch_return"):
            if not -1 < getattr(self, name) < 0:
                yield name, f"expected (-1, 0), got {getattr(self, name)}"
        if not 0 <= self.reconcile_tolerance < self.quantity:
            yield (
                "reconcile_tolerance",
                f"expected 0 <= tolerance < quantity ({self.quantity}), got {self.reconcile_tolerance}",
            )
        if self.lock_wait_seconds < 0:
            yield "lock_wait_seconds", f"must be >= 0, got {self.lock_wait_seconds}"
        if not 0 < self.exchange_timeout_seconds <= 120:
            yield (
                "exchange_timeout_seconds",
                f"expected (0, 120] seconds, got {self.exchange_timeout_seconds}",
            )
        if not 0 < self.recv_window_ms <= 60000:
            yield "recv_window_ms", f"expected (0, 60000] ms (Binance's range), got {self.recv_window_ms}"
        if not self.filters_max_age_hours > 0:
            yield "filters_max_age_hours", f"must be > 0, got {self.filters_max_age_hours}"
        if not 0 < self.retrain_min_accuracy <= 1 or self.retrain_window < 1:
            yield "retrain_min_accuracy", "expected (0, 1] and retrain_window >= 1"
        if self.drift_min_samples < 10:
            yield (
                "drift_min_samples",
                f"expected at least 10 (PSI has 10 bins), got {self.drift_min_samples}",
            )


@dataclass(frozen=True)
class Params(_Checked):
    """The whole params.yaml; `problems` adds what needs two sections to tell."""

    data: DataParams = field(default_factory=DataParams)
    features: FeatureParams = field(default_factory=FeatureParams)
    split: SplitParams = field(default_factory=SplitParams)
    backtest: BacktestParams = field(default_factory=BacktestParams)
    tune: TuneParams = field(default_factory=TuneParams)
    publish: PublishParams = field(default_factory=PublishParams)
    online: OnlineParams = field(default_factory=OnlineParams)
    trade: TradeParams = field(default_factory=TradeParams)
    portfolio: PortfolioParams = field(default_factory=PortfolioParams)

    def problems(self) -> Problems:
        capped = set(self.trade.max_quantities) - set(self.data.symbols)
        if capped:
            yield (
                "trade.max_quantities",
                f"names {', '.join(sorted(capped))}, not in data.symbols "
                f"({', '.join(self.data.symbols)})",
            )
        weighted = set(self.portfolio.weights)
        if weighted and weighted != set(self.data.symbols):
            yield (
                "portfolio.weights",
                f"must give a weight to each of data.symbols ({', '.join(self.data.symbols)}) "
                f"and no other; got {', '.join(sorted(weighted))}",
            )
        in_sample_days = self.split.in_sample.days
        if self.tune.holdout_days >= in_sample_days:
            yield (
                "tune.holdout_days",
                f"{self.tune.holdout_days} leaves the search no day of the in-sample span "
                f"{self.split.in_sample} ({in_sample_days} days): lower it (0: no inner "
                "hold-out) or widen split.in_sample_*",
            )
        step_hours = self.backtest.step_days * 24
        longest = self.tune.search_space.horizon_hours[1]
        if longest > step_hours:
            yield (
                "tune.search_space.horizon_hours",
                f"high {longest} is longer than a walk-forward step (backtest.step_days "
                f"{self.backtest.step_days} = {step_hours} hours): the purge would eat the fold",
            )
        unlisted = [
            name for name in self.tune.search_space.primary
            if name != NO_PRIMARY and name not in self.features.indicators
        ]  # fmt: skip
        if unlisted:
            yield (
                "tune.search_space.primary",
                f"{unlisted} must be among features.indicators: the model reads its primary's "
                "bets from its own feature row, in training and in serving",
            )
        in_days = [name for name in self.features.indicators if spans_gaps(name)]
        if in_days and self.data.interval != "1h":
            yield (
                "features.indicators",
                f"{in_days} count their period in days of hourly candles; data.interval is "
                f"{self.data.interval}: give those periods in candles",
            )


def cross_asset_column(reference: str, indicator: str) -> str:
    """The column of the reference's indicator among another symbol's features."""
    return f"{reference.lower()}_{indicator}"


def file_problems(params: Params) -> Problems:
    """What a params file must hold that params narrowed to one symbol (`for_symbol`) need not:
    the cross-asset reference among data.symbols, so that `make data` fetches its candles."""
    reference = params.features.reference
    if params.features.cross_asset and reference not in params.data.symbols:
        yield (
            "features.reference",
            f"{reference} is not in data.symbols ({', '.join(params.data.symbols)}): its "
            "candles make the cross-asset features; add it, or change the reference",
        )


def load_params(
    path: Path | str = DEFAULT_PARAMS_PATH, *, environ: Mapping[str, str] | None = None
) -> Params:
    """Reads and validates params.yaml, with the environment's overrides (`environment.PARAMS_OVERRIDES`).

    Args:
        environ: the variables to read the overrides from (default: os.environ).

    Raises:
        ParamsError: the file is missing or unreadable, or a key is unknown or invalid; a
            value that came from the environment names its variable.
    """
    return _with_overrides(_read_params_file(Path(path)), environ)[0]


def check_params(
    path: Path | str = DEFAULT_PARAMS_PATH, *, environ: Mapping[str, str] | None = None
) -> tuple[Params | None, list[tuple[str, str]]]:
    """Every problem the loader finds in params.yaml, and the params with each faulty key left
    at its default, so that checks which need whole params (spans against look-backs, the
    data) still run and one run lists every problem.

    Returns:
        (params, problems): params is None when the file cannot be read or salvaged.
    """
    try:
        raw = _read_params_file(Path(path))
    except ParamsError as exc:
        return None, list(exc.problems)
    try:
        return _with_overrides(raw, environ)[0], []
    except ParamsError as exc:
        found = list(exc.problems)
    applied, _ = with_environment(raw, os.environ if environ is None else environ)
    return _salvage(applied, found), found


def environment_params(environ: Mapping[str, str] | None = None) -> tuple[Params, set[str]]:
    """The defaults with the environment's overrides, and the keys they set: what a process
    that has no params.yaml (a model server in its container) runs with.

    Raises:
        ParamsError: an override is invalid; the message names its variable.
    """
    return _with_overrides({}, environ)


def _read_params_file(path: Path) -> object:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), f"not valid YAML: {exc}") from None
    return raw or {}


def _with_overrides(raw: object, environ: Mapping[str, str] | None) -> tuple[Params, set[str]]:
    """Params from raw with the environment's overrides, and the keys those set; a problem
    with an overridden value names its variable."""
    raw, overridden = with_environment(raw, os.environ if environ is None else environ)
    try:
        return params_from_mapping(raw), set(overridden)
    except ParamsError as exc:
        raise ParamsError.of(
            [
                (key, f"{reason} (from ${overridden[key]})" if key in overridden else reason)
                for key, reason in exc.problems
            ]
        ) from None


def _salvage(raw: object, problems: list[tuple[str, str]]) -> Params | None:
    raw = copy.deepcopy(raw)
    for _ in range(3):  # a dropped key's default may clash with a kept one: drop that too
        if not isinstance(raw, dict):
            return None
        for key, _reason in problems:
            _drop(raw, key)
        try:
            return params_from_mapping(raw)
        except ParamsError as exc:
            problems = exc.problems
    return None


def _drop(raw: dict, key: str) -> None:
    """Removes a dotted key ("tune.search_space.gamma[0]" drops gamma) from raw."""
    *parents, name = key.split("[", 1)[0].split(".")
    node = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(name, None)


def with_environment(raw: object, environ: Mapping[str, str]) -> tuple[object, dict[str, str]]:
    """raw with every set PARAMS_OVERRIDES variable written over its key.

    Returns:
        The new mapping (raw is not changed) and {dotted key: variable} of what was overridden.
    """
    if not isinstance(raw, dict):
        return raw, {}
    raw = copy.deepcopy(raw)
    overridden = {}
    for variable, key in PARAMS_OVERRIDES.items():
        value = environ.get(variable)
        if not value:
            continue
        section, name = key.split(".")
        if raw.get(section) is None:
            raw[section] = {}
        if isinstance(raw[section], dict):
            raw[section][name] = value
            overridden[key] = variable
    return raw, overridden


def params_from_mapping(raw: object) -> Params:
    """Builds Params from an already parsed mapping (params.yaml's content)."""
    params = _build(Params, raw, prefix="")
    problems = list(file_problems(params))
    if problems:
        raise ParamsError.of(problems)
    return params


def _build(cls: type, raw: object, *, prefix: str):
    """cls from raw, checking every key; raises one ParamsError that lists every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(prefix or "params", f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    problems = [
        (
            _join(prefix, str(name)),
            RENAMED.get(_join(prefix, str(name)), f"unknown key; expected one of {sorted(fields)}"),
        )
        for name in sorted(set(raw) - fields, key=str)
    ]
    values, failed = {}, set()
    for name, value in raw.items():
        if name not in fields:
            continue
        try:
            values[name] = _convert(hints[name], value, key=_join(prefix, name))
        except ParamsError as exc:
            problems += exc.problems
            failed.add(name)
    built = None
    try:
        built = cls(**values)
    except ParamsError as exc:
        # A key that failed to convert was checked with its default: say nothing about it.
        problems += [(_join(prefix, k), r) for k, r in exc.problems if _root(k) not in failed]
    if problems:
        raise ParamsError.of(problems)
    return built


def _root(key: str) -> str:
    return key.split(".", 1)[0].split("[", 1)[0]


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
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(key, f"expected a mapping, got {value!r}")
        key_type, value_type = args
        return {
            _convert(key_type, k, key=key): _convert(value_type, v, key=f"{key}.{k}")
            for k, v in value.items()
        }
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
