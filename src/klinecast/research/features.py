"""Features and labels: pure functions of a candle frame (the indicators come from
`klinecast.indicators`).

Training (`klinecast features`) and serving (the KServe transformer) both call
`compute_features`, so the two cannot drift apart.

Row t of the result is indexed by the open_time of the newest candle it uses; that candle
closes at t + interval, which is when the row can be known. The label says whether the
*next* candle (open_time t + interval) closes above candle t's close; `horizon_labels` gives
the label h candles ahead, from the same frame.

Hourly indicators are computed separately on every run of contiguous candles: a gap (an
exchange outage) restarts them, and rows whose indicator window would reach across a gap or
before the first candle are dropped and counted, never forward-filled. Day-scale indicators
(`ma_ratio_200d`) span gaps, and their windows count days on the clock: an hour without a
candle counts as a flat hour at the last close, with no volume (`_on_the_clock`), so 200 days
are 4,800 hours whatever the outages. Restarting them would drop 200 days after every outage
(the mirror has one every few months), and counting only the candles present would stretch a
window by its outages. Either way a row depends only on candles up to its own, so a window of
min_history candles ending at it gives the same row in serving.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from klinecast.config import FeatureParams
from klinecast.errors import KlinecastError
from klinecast.indicators import (
    INPUTS,
    indicator_lookback,
    indicator_values,
    parse_indicator,
    spans_gaps,
)

LABEL = "label"
NEXT_RETURN = "next_return"
#: The row's own candle close, beside the features: what the baselines' rules read (a
#: trend rule's moving average, the realised volatility). Not a feature of the model.
CLOSE = "close"


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
            "indicators": [
                c for c in self.frame.columns if c not in (LABEL, NEXT_RETURN, CLOSE)
            ],
            "min_history": min_history,
        }


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
        candle closes higher, 0.0 if not, NaN if it is missing), `next_return` and `close`.
    """
    step = np.int64(pd.Timedelta(interval).value)
    stamps = candles.index.asi8
    breaks = np.flatnonzero(np.diff(stamps) != step) + 1
    bounds = np.concatenate([[0], breaks, [len(candles)]])
    arrays = {c: candles[c].to_numpy(dtype=np.float64) for c in INPUTS if c in candles}
    arrays["decided_at"] = stamps + step  # the row is known when its candle closes
    columns = {name: np.full(len(candles), np.nan) for name in indicators}
    clock, at = _on_the_clock(arrays, stamps, step)
    for name in indicators:  # day-scale: on the clock's hours, across gaps
        if spans_gaps(name) and len(clock["close"]) >= indicator_lookback(name):
            columns[name] = indicator_values(*parse_indicator(name), clock)[at]
    hourly = [name for name in indicators if not spans_gaps(name)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):  # hourly: run by run
        segment = {c: np.ascontiguousarray(a[lo:hi]) for c, a in arrays.items()}
        for name in hourly:
            if hi - lo >= indicator_lookback(name):
                columns[name][lo:hi] = indicator_values(*parse_indicator(name), segment)

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
    frame[CLOSE] = close
    complete = np.isfinite(frame[list(indicators)].to_numpy()).all(axis=1)
    # before the first run's end or the longest day-scale window: short of history, not a gap
    longest_day = max((indicator_lookback(n) for n in indicators if spans_gaps(n)), default=0)
    at_start = (np.arange(len(candles)) < bounds[1]) | (at < longest_day - 1)
    return FeatureSet(
        frame=frame[complete],
        dropped_at_start=int((~complete & at_start).sum()),
        dropped_after_gaps=int((~complete & ~at_start).sum()),
        unlabeled=int((complete & ~has_next).sum()),
    )


def _on_the_clock(
    arrays: dict[str, np.ndarray], stamps: np.ndarray, step: np.int64
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The candles on every interval from the first to the last, and where each candle sits
    there: an interval without a candle (an outage) is a flat one at the last close, with no
    volume, so a day-scale window spans its days on the clock."""
    if not len(stamps):
        return arrays, np.arange(0)
    at = (stamps - stamps[0]) // step
    hours = int(at[-1]) + 1
    if hours == len(stamps):  # no gap: the candles are the clock
        return arrays, at
    present = np.zeros(hours, dtype=bool)
    present[at] = True
    close = arrays["close"][np.cumsum(present) - 1]  # the last candle's close at or before
    clock = {"decided_at": stamps[0] + (np.arange(hours, dtype=np.int64) + 1) * step}
    for column, values in arrays.items():
        if column == "decided_at":
            continue
        filled = close.copy() if column in ("open", "high", "low", "close") else np.zeros(hours)
        filled[at] = values
        clock[column] = filled
    return clock, at


def symbol_features(
    candles: pd.DataFrame,
    features: FeatureParams,
    *,
    interval: dt.timedelta,
    reference_candles: pd.DataFrame | None = None,
) -> FeatureSet:
    """A symbol's features as the model reads them (features.names): its own indicators, then
    features.cross_asset of the reference's candles at the same hour. Training (`klinecast
    features`) and serving (`features sync`) both call it.

    The reference's row t uses the reference's candles up to t, which close with the symbol's
    candle t: no look-ahead. A row whose hour the reference lacks (an outage, or before the
    reference's history is long enough) is dropped and counted with the gaps.

    Raises:
        KlinecastError: cross-asset features are set and no reference candles were given.
    """
    own = compute_features(candles, indicators=features.indicators, interval=interval)
    if not features.cross_asset:
        return own
    if reference_candles is None or reference_candles.empty:
        raise KlinecastError(
            f"features.cross_asset needs {features.reference}'s candles beside the symbol's; "
            "none were given (dvc.yaml's reference stage writes them)"
        )
    theirs = compute_features(
        reference_candles, indicators=features.cross_asset, interval=interval
    ).frame[list(features.cross_asset)]
    theirs.columns = list(features.cross_asset_columns)
    joined = own.frame.join(theirs, how="inner")
    order = [*features.names, LABEL, NEXT_RETURN, CLOSE]
    return dataclasses.replace(
        own,
        frame=joined[order],
        dropped_after_gaps=own.dropped_after_gaps + len(own.frame) - len(joined),
        unlabeled=int((joined[LABEL].isna()).sum()),
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
    max_history: int | None = None,
) -> int:
    """Measures how many candles of history make a short-window feature equal the full one.

    TA-Lib's RSI (and other recursive indicators) seed their smoothing from the first
    candles they see, so a feature computed on the last n candles only converges to the
    full-history value as n grows. This finds the smallest n for which the newest row
    agrees to `tolerance` at `samples` end points that have max_history candles before them
    (default: the longest indicator window plus 1,500), gaps included.

    Raises:
        ValueError: too few rows have max_history candles before them.
    """
    longest = max(indicator_lookback(name) for name in indicators)
    max_history = max_history or longest + 1500
    full = compute_features(candles, indicators=indicators, interval=interval).frame
    # every candidate end point has max_history candles before it, so its full-history
    # reference has converged too; a window may hold gaps, as serving's may
    candidates = np.arange(max_history, len(candles))
    candidates = candidates[candles.index[candidates].isin(full.index)]
    if len(candidates) < samples:
        raise ValueError(
            f"only {len(candidates)} candles have {max_history} candles and a feature row "
            f"before them; measuring needs {samples}"
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

    low, high = longest, max_history
    if not agrees(high):
        raise ValueError(f"features do not converge to {tolerance} within {max_history} candles")
    while low < high:
        mid = (low + high) // 2
        if agrees(mid):
            high = mid
        else:
            low = mid + 1
    return low
