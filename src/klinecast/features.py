"""TA-Lib indicators and the labels: pure functions of a candle frame.

Training (`klinecast features`) and serving (the KServe transformer) both call
`compute_features`, so the two cannot drift apart.

Row t of the result is indexed by the open_time of the newest candle it uses; that candle
closes at t + interval, which is when the row can be known. The label says whether the
*next* candle (open_time t + interval) closes above candle t's close; `horizon_labels` gives
the label h candles ahead, from the same frame.

Indicators are computed separately on every run of contiguous candles: a gap (an exchange
outage) restarts them, and rows whose indicator window would reach across a gap or before
the first candle are dropped and counted, never forward-filled.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib

LABEL = "label"
NEXT_RETURN = "next_return"

_Indicator = Callable[[dict[str, np.ndarray], int], np.ndarray]
_HOUR_NS = 3_600 * 10**9


def _ratio(numerator: np.ndarray, denominator: np.ndarray, *, empty: float) -> np.ndarray:
    """numerator / denominator, with `empty` where the denominator is 0 (no volume, no range)."""
    out = np.full(len(numerator), empty)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return np.where(np.isnan(numerator) | np.isnan(denominator), np.nan, out)


def _log_returns(close: np.ndarray) -> np.ndarray:
    return np.log(talib.ROCR(close, timeperiod=1))


def _volume_z(c: dict[str, np.ndarray], n: int) -> np.ndarray:
    deviation = c["volume"] - talib.SMA(c["volume"], timeperiod=n)
    return _ratio(deviation, talib.STDDEV(c["volume"], timeperiod=n), empty=0.0)


def _range_position(c: dict[str, np.ndarray], n: int) -> np.ndarray:
    low, high = talib.MIN(c["low"], timeperiod=n), talib.MAX(c["high"], timeperiod=n)
    return _ratio(c["close"] - low, high - low, empty=0.5)


def _cyclic(c: dict[str, np.ndarray], *, period_hours: int, wave, offset_hours: int = 0):
    """A sine or cosine of the decision time (when the row's candle closes) over a cycle."""
    hours = c["decided_at"] // _HOUR_NS + offset_hours
    return wave(2 * np.pi * (hours % period_hours) / period_hours)


#: Indicator families: name -> function of (candle arrays, period). A params.yaml entry
#: `<family>_<period>`, e.g. `rsi_14`, selects one; adding a family here is all it takes.
#: TA-Lib computes wherever it has the indicator (ROCR, STDDEV, SMA, MIN, MAX included).
FAMILIES: dict[str, _Indicator] = {
    "ma_ratio": lambda c, n: talib.SMA(c["close"], timeperiod=n) / c["close"],
    "ema_ratio": lambda c, n: talib.EMA(c["close"], timeperiod=n) / c["close"],
    "rsi": lambda c, n: talib.RSI(c["close"], timeperiod=n),
    "mfi": lambda c, n: talib.MFI(c["high"], c["low"], c["close"], c["volume"], timeperiod=n),
    "roc": lambda c, n: talib.ROC(c["close"], timeperiod=n),
    "natr": lambda c, n: talib.NATR(c["high"], c["low"], c["close"], timeperiod=n),
    "willr": lambda c, n: talib.WILLR(c["high"], c["low"], c["close"], timeperiod=n),
    "cci": lambda c, n: talib.CCI(c["high"], c["low"], c["close"], timeperiod=n),
    "adx": lambda c, n: talib.ADX(c["high"], c["low"], c["close"], timeperiod=n),
    # log return over n candles: ln(close / close n candles earlier)
    "log_return": lambda c, n: np.log(talib.ROCR(c["close"], timeperiod=n)),
    # realised volatility: the standard deviation of the last n one-candle log returns
    "rvol": lambda c, n: talib.STDDEV(_log_returns(c["close"]), timeperiod=n),
    # share of the volume bought by takers (market buys), averaged over n candles
    "taker_buy": lambda c, n: talib.SMA(
        _ratio(c["taker_buy_volume"], c["volume"], empty=0.5), timeperiod=n
    ),
    # volume against its n-candle mean, in n-candle standard deviations
    "volume_z": _volume_z,
    # where the close sits in the n-candle high-low range: 0 at the low, 1 at the high
    "range_pos": _range_position,
}
#: Families whose shortest period is not 2 (a one-candle log return is the last candle's).
SHORTEST_PERIOD = {"log_return": 1}
#: Calendar features take no period: the hour of day and the day of week of the decision time.
CALENDAR: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "hour_sin": lambda c: _cyclic(c, period_hours=24, wave=np.sin),
    "hour_cos": lambda c: _cyclic(c, period_hours=24, wave=np.cos),
    # the epoch began on a Thursday: 72 hours on, the week's cycle starts on Monday 00:00 UTC
    "dow_sin": lambda c: _cyclic(c, period_hours=168, wave=np.sin, offset_hours=72),
    "dow_cos": lambda c: _cyclic(c, period_hours=168, wave=np.cos, offset_hours=72),
}
#: Candle columns beyond OHLCV that some families read (a serving request must carry them).
EXTRA_INPUTS = {"taker_buy": ("taker_buy_volume",)}
_NAME = re.compile(r"^(?P<family>[a-z_]+?)_(?P<period>\d+)$")
_INPUTS = ("open", "high", "low", "close", "volume", "taker_buy_volume")


@dataclass(frozen=True)
class FeatureSet:
    """Features + label, and how many candle rows were dropped and why."""

    frame: pd.DataFrame
    dropped_at_start: int  # the indicator window reaches before the first candle
    dropped_after_gaps: int  # the indicator window would cross a gap
    unlabeled: int  # the next candle is missing (last row, or a gap follows)

    @property
    def labeled(self) -> int:
        return int(self.frame[LABEL].notna().sum())

    def report(self, *, min_history: int) -> dict:
        """The feature stage's report (reports/features.json; KFP metadata)."""
        return {
            "rows": len(self.frame),
            "labeled_rows": self.labeled,
            "up_share": float(self.frame[LABEL].mean()),
            "dropped_at_start": self.dropped_at_start,
            "dropped_after_gaps": self.dropped_after_gaps,
            "unlabeled": self.unlabeled,
            "first": pd.Timestamp(self.frame.index[0]).isoformat(),
            "last": pd.Timestamp(self.frame.index[-1]).isoformat(),
            "indicators": [c for c in self.frame.columns if c not in (LABEL, NEXT_RETURN)],
            "min_history": min_history,
        }


def parse_indicator(name: str) -> tuple[str, int]:
    """Splits `rsi_14` into ("rsi", 14); a calendar feature is (its name, 0).

    Raises:
        ValueError: unknown family or a period below 2, with the accepted names.
    """
    if name in CALENDAR:
        return name, 0
    match = _NAME.match(name)
    if not match or match["family"] not in FAMILIES:
        raise ValueError(
            f"unknown indicator {name!r}; expected <family>_<period> with family one of "
            f"{sorted(FAMILIES)}, e.g. rsi_14, or one of {sorted(CALENDAR)}"
        )
    period = int(match["period"])
    shortest = SHORTEST_PERIOD.get(match["family"], 2)
    if period < shortest:
        raise ValueError(f"indicator {name!r}: the period must be at least {shortest}")
    return match["family"], period


@functools.cache
def indicator_lookback(name: str) -> int:
    """Candles an indicator needs before its first value (its window, the current one included)."""
    family, period = parse_indicator(name)
    length = 4 * period + 50
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(size=length))
    volume = rng.uniform(1, 2, size=length)
    arrays = {
        "open": close,
        "high": close + 1,
        "low": close - 1,
        "close": close,
        "volume": volume,
        "taker_buy_volume": volume * rng.uniform(0.2, 0.8, size=length),
        "decided_at": np.arange(1, length + 1, dtype=np.int64) * _HOUR_NS,
    }
    values = _indicator(family, period, arrays)
    return int(np.argmax(~np.isnan(values))) + 1


def _indicator(family: str, period: int, arrays: dict[str, np.ndarray]) -> np.ndarray:
    if family in CALENDAR:
        return CALENDAR[family](arrays)
    return FAMILIES[family](arrays, period)


def required_columns(indicators: Sequence[str]) -> tuple[str, ...]:
    """The candle columns the indicators read: OHLCV, plus e.g. taker_buy_volume."""
    extra = {c for name in indicators for c in EXTRA_INPUTS.get(parse_indicator(name)[0], ())}
    return ("open", "high", "low", "close", "volume", *sorted(extra))


def compute_features(
    candles: pd.DataFrame, *, indicators: Sequence[str], interval: dt.timedelta
) -> FeatureSet:
    """Computes the indicators and the next-candle label.

    Args:
        candles: a candle frame with a strictly increasing UTC index (gaps allowed).
        indicators: names like `rsi_14`, in the column order wanted.
        interval: the candle length; a larger step between two candles is a gap.

    Returns:
        A FeatureSet whose frame has one column per indicator, then `label` (1.0 if the next
        candle closes higher, 0.0 if not, NaN if it is missing) and `next_return`.
    """
    step = np.int64(pd.Timedelta(interval).value)
    stamps = candles.index.asi8
    breaks = np.flatnonzero(np.diff(stamps) != step) + 1
    bounds = np.concatenate([[0], breaks, [len(candles)]])
    arrays = {c: candles[c].to_numpy(dtype=np.float64) for c in _INPUTS if c in candles}
    arrays["decided_at"] = stamps + step  # the row is known when its candle closes
    columns = {name: np.full(len(candles), np.nan) for name in indicators}
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        segment = {c: np.ascontiguousarray(a[lo:hi]) for c, a in arrays.items()}
        for name in indicators:
            family, period = parse_indicator(name)
            if hi - lo >= indicator_lookback(name):
                columns[name][lo:hi] = _indicator(family, period, segment)

    close = arrays["close"]
    next_close = np.full(len(candles), np.nan)
    has_next = np.zeros(len(candles), dtype=bool)
    has_next[:-1] = np.diff(stamps) == step
    next_close[:-1][has_next[:-1]] = close[1:][has_next[:-1]]
    label = np.where(has_next, (next_close > close).astype(float), np.nan)
    next_return = next_close / close - 1.0

    frame = pd.DataFrame(columns, index=candles.index)
    frame[LABEL] = label
    frame[NEXT_RETURN] = next_return
    complete = np.isfinite(frame[list(indicators)].to_numpy()).all(axis=1)
    in_first_segment = np.arange(len(candles)) < bounds[1]
    return FeatureSet(
        frame=frame[complete],
        dropped_at_start=int((~complete & in_first_segment).sum()),
        dropped_after_gaps=int((~complete & ~in_first_segment).sum()),
        unlabeled=int((complete & ~has_next).sum()),
    )


def horizon_labels(frame: pd.DataFrame, *, horizon: int, interval: dt.timedelta) -> pd.Series:
    """The label `horizon` candles ahead: 1.0 if close(t + h) > close(t), 0.0 if not.

    Computed from the frame's own `next_return` column: rows t .. t+h-1 must be consecutive
    candles, each with its next candle known; otherwise (a gap, the end of the data) NaN.
    Row t's label thus uses candles up to t + h, which close at t + (h + 1) * interval.
    """
    if horizon == 1:
        return frame[LABEL].rename("label_1h")
    step = pd.Timedelta(interval).value
    stamps = frame.index.asi8
    growth = np.log1p(frame[NEXT_RETURN].to_numpy(dtype=np.float64))
    known = np.isfinite(growth)
    total = np.concatenate([[0.0], np.cumsum(np.where(known, growth, 0.0))])
    counted = np.concatenate([[0], np.cumsum(known)])
    out = np.full(len(frame), np.nan)
    first = np.arange(max(0, len(frame) - horizon + 1))
    last = first + horizon - 1
    usable = (stamps[last] - stamps[first] == (horizon - 1) * step) & (
        counted[last + 1] - counted[first] == horizon
    )
    # a sum of logs: equal closes may leave a rounding crumb, which is not "higher"
    out[first[usable]] = (total[last + 1] - total[first])[usable] > 1e-12
    return pd.Series(out, index=frame.index, name=f"label_{horizon}h")


def measure_min_history(
    candles: pd.DataFrame,
    *,
    indicators: Sequence[str],
    interval: dt.timedelta,
    tolerance: float = 1e-9,
    samples: int = 200,
    max_history: int = 1500,
) -> int:
    """Measures how many candles of history make a short-window feature equal the full one.

    TA-Lib's RSI (and other recursive indicators) seed their smoothing from the first
    candles they see, so a feature computed on the last n candles only converges to the
    full-history value as n grows. This finds the smallest n for which the newest row
    agrees to `tolerance` at `samples` end points spread over every contiguous run longer
    than max_history.

    Raises:
        ValueError: too few candles have max_history contiguous candles before them.
    """
    full = compute_features(candles, indicators=indicators, interval=interval).frame
    stamps = candles.index.asi8
    step = pd.Timedelta(interval).value
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(stamps) != step) + 1, [len(candles)]])
    # Every candidate end point has max_history candles of its own run before it, so its
    # full-history reference has converged too.
    candidates = np.concatenate(
        [np.arange(lo + max_history, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    )
    if len(candidates) < samples:
        raise ValueError(
            f"only {len(candidates)} candles have {max_history} contiguous candles before "
            f"them; measuring needs {samples}"
        )
    ends = candidates[np.linspace(0, len(candidates) - 1, samples).astype(int)]
    reference = full.loc[candles.index[ends], list(indicators)].to_numpy()

    def agrees(n: int) -> bool:
        for k, end in enumerate(ends):
            window = candles.iloc[end - n + 1 : end + 1]
            row = compute_features(window, indicators=indicators, interval=interval).frame
            if row.empty or row.index[-1] != candles.index[end]:
                return False
            if np.max(np.abs(row[list(indicators)].to_numpy()[-1] - reference[k])) > tolerance:
                return False
        return True

    low = max(indicator_lookback(name) for name in indicators)
    high = max_history
    if not agrees(high):
        raise ValueError(f"features do not converge to {tolerance} within {max_history} candles")
    while low < high:
        mid = (low + high) // 2
        if agrees(mid):
            high = mid
        else:
            low = mid + 1
    return low
