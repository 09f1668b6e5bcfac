"""The indicator catalogue: every feature family by name, its TA-Lib function, and how many
candles it needs.

A params.yaml entry `<family>_<period>` (e.g. `rsi_14`) names one indicator over `period`
candles; a period with a `d` suffix counts days of hourly candles on the clock (`ma_ratio_200d`
is the close against its average over the last 4,800 hours, an hour without a candle counted
flat at the last close: `klinecast.research.features`). A calendar name (`hour_sin`, ...) names one without a period. config.py checks the names against this
catalogue when params.yaml is loaded; `klinecast.research.features.compute_features` computes
them. Nothing here knows about labels, gaps or training.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np
import talib

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


def _volume_ratio(c: dict[str, np.ndarray], n: int) -> np.ndarray:
    day = talib.SMA(c["volume"], timeperiod=CANDLES_PER_DAY)
    return _ratio(day, talib.SMA(c["volume"], timeperiod=n), empty=1.0)


def _trend(c: dict[str, np.ndarray], n: int) -> np.ndarray:
    """The trend rule: 1 when the close was above its n-candle average at the day's decision
    (the candle that closes at 00:00 UTC), 0 when not, held until the next day's decision;
    NaN before the first decision with an average (a rule that trades a few times a year)."""
    average = talib.SMA(c["close"], timeperiod=n)
    above = np.where(np.isnan(average), np.nan, (c["close"] > average).astype(float))
    decides = (c["decided_at"] // _HOUR_NS) % 24 == 0
    at = np.arange(len(above))
    last = np.maximum.accumulate(np.where(decides & ~np.isnan(above), at, -1))
    return np.where(last >= 0, above[np.maximum(last, 0)], np.nan)


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
    # the drawdown: the close against the n-candle high, minus 1 (0 at a new high, < 0 below)
    "drawdown": lambda c, n: c["close"] / talib.MAX(c["high"], timeperiod=n) - 1,
    # the rally: the close against the n-candle low, minus 1 (0 at a new low, > 0 above)
    "rally": lambda c, n: c["close"] / talib.MIN(c["low"], timeperiod=n) - 1,
    # the last day's mean volume (24 candles) against the n-candle mean
    "volume_ratio": _volume_ratio,
    # 1 above the n-candle average at the day's 00:00 UTC decision, else 0: the trend
    # baseline's rule as a feature, and what a meta-labelled model's primary proposes
    "trend": _trend,
}
#: Hourly candles in a day: what a `d` period counts in.
CANDLES_PER_DAY = 24
#: Families whose shortest period is not 2 (a one-candle log return is the last candle's;
#: the volume ratio compares a day with a longer span).
SHORTEST_PERIOD = {"log_return": 1, "volume_ratio": 2 * CANDLES_PER_DAY}
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
#: An indicator whose period counts days, e.g. `ma_ratio_200d`.
DAY_PERIOD = re.compile(r"_\d+d$")
_NAME = re.compile(r"^(?P<family>[a-z_]+?)_(?P<period>\d+)(?P<days>d?)$")
INPUTS = ("open", "high", "low", "close", "volume", "taker_buy_volume")


def is_indicator(name: str) -> bool:
    """Whether name is a catalogued indicator (not, say, a cross-asset column)."""
    try:
        parse_indicator(name)
    except ValueError:
        return False
    return True


def parse_indicator(name: str) -> tuple[str, int]:
    """Splits `rsi_14` into ("rsi", 14) and `ma_ratio_200d` into ("ma_ratio", 4800): the period
    in candles. A calendar feature is (its name, 0).

    Raises:
        ValueError: unknown family or a period below 2, with the accepted names.
    """
    if name in CALENDAR:
        return name, 0
    match = _NAME.match(name)
    if not match or match["family"] not in FAMILIES:
        raise ValueError(
            f"unknown indicator {name!r}; expected <family>_<period> with family one of "
            f"{sorted(FAMILIES)}, e.g. rsi_14 (14 candles) or ma_ratio_200d (200 days), or one "
            f"of {sorted(CALENDAR)}"
        )
    period = int(match["period"]) * (CANDLES_PER_DAY if match["days"] else 1)
    shortest = SHORTEST_PERIOD.get(match["family"], 2)
    if period < shortest:
        raise ValueError(
            f"indicator {name!r}: the period must be at least {shortest} candles, got {period}"
        )
    return match["family"], period


def spans_gaps(name: str) -> bool:
    """Whether the indicator is computed across gaps: a day-scale one counts its days on the
    clock (an exchange outage of a few hours is a small part of them), while an hourly one
    restarts after every gap (see `klinecast.research.features`)."""
    return bool(DAY_PERIOD.search(name))


def fetch_hours(min_history: int) -> int:
    """Hours of candles to ask an exchange for so that min_history candles arrive: 10 % more,
    for the hours an outage left without a candle (the mirror's longest gap is 33 hours; its
    200 days before any hour miss at most 45)."""
    return min_history + min_history // 10


@functools.cache
def indicator_lookback(name: str) -> int:
    """Candles an indicator needs before its first value (its window, the current one included)."""
    family, period = parse_indicator(name)
    length = 4 * period + 50
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(scale=0.01, size=length)))
    volume = rng.uniform(1, 2, size=length)
    arrays = {
        "open": close,
        "high": close * 1.01,
        "low": close * 0.99,
        "close": close,
        "volume": volume,
        "taker_buy_volume": volume * rng.uniform(0.2, 0.8, size=length),
        "decided_at": np.arange(1, length + 1, dtype=np.int64) * _HOUR_NS,
    }
    values = indicator_values(family, period, arrays)
    first = int(np.argmax(~np.isnan(values))) + 1
    # the first decision after the window fills may come up to a day less one candle later
    return first + (CANDLES_PER_DAY - 1 if family == "trend" else 0)


def indicator_values(family: str, period: int, arrays: dict[str, np.ndarray]) -> np.ndarray:
    if family in CALENDAR:
        return CALENDAR[family](arrays)
    return FAMILIES[family](arrays, period)


def required_columns(indicators: Sequence[str]) -> tuple[str, ...]:
    """The candle columns the indicators read: OHLCV, plus e.g. taker_buy_volume."""
    extra = {c for name in indicators for c in EXTRA_INPUTS.get(parse_indicator(name)[0], ())}
    return ("open", "high", "low", "close", "volume", *sorted(extra))


