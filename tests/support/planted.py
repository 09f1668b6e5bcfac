"""Planted series: synthetic years with an edge of a known shape and strength, or none, for the
planted and null tests and the power benchmark (benchmarks/power.py).

Every series is BTC-like hourly noise (0.6 % an hour), driftless within each span (in sample,
out of sample), with an edge planted through one or two of the default features:

- `day_aligned`: each UTC day's taker-buy share carries the next day's drift
  (`candle_factory.planted_candles`; `taker_buy_24` read at 00:00 UTC);
- `trailing`: a slow hidden factor (an AR(1) with a half-life of about 1.4 days) moves the hourly
  taker-buy share and the next hour's drift; `taker_buy_24`, a trailing 24-hour window read at
  any hour, carries it. Nothing is aligned to UTC days;
- `interaction`: two slow hidden factors, one in the taker-buy share (`taker_buy_24`), one in
  the volume's level (`volume_ratio_30d`); the drift is their product, so each feature alone
  carries nothing and the two together carry the edge.

`null` series carry no edge: GARCH(1,1) volatility clustering with Student-t(5) innovations
(arch's simulator), driftless, with shares and volumes that mean nothing.

The oracle of a shape is the one-line long-or-flat rule on the feature(s) that carry it, after
costs, over the out-of-sample span: its annualised Sharpe ratio is the series' strength on a
scale that does not depend on the shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from klinecast.research.backtest import strategy_returns
from klinecast.research.features import compute_features
from tests.support.candle_factory import candle_frame, planted_candles
from tests.support.paths import REPO

#: 200 days for the longest feature, four years in sample (as the mirror's 2018-2021), three out
START, IN_SAMPLE, OUT_OF_SAMPLE, END = "2017-06-01", "2018-01-01", "2022-01-01", "2025-01-01"
SPLIT = {
    "in_sample_start": IN_SAMPLE,
    "in_sample_end": "2021-12-31",
    "out_of_sample_start": OUT_OF_SAMPLE,
    "out_of_sample_end": "2024-12-31",
}
#: what the backtest charges per side: params.yaml's fee and slippage
COST = 0.0011
VOLATILITY = 0.006
SHAPES = ("day_aligned", "trailing", "interaction")
#: the AR(1) coefficient of the hidden factors: a half-life of log(0.5)/log(0.98) = 34 hours
PERSISTENCE = 0.98


def days_from_start(day: str) -> int:
    return (pd.Timestamp(day) - pd.Timestamp(START)).days


def _span_bounds(hours: int) -> tuple[int, ...]:
    return tuple(
        24 * days_from_start(day)
        for day in (IN_SAMPLE, OUT_OF_SAMPLE)
        if 24 * days_from_start(day) < hours
    )


def _slow_factor(rng: np.random.Generator, n: int) -> np.ndarray:
    """A standardised AR(1) of PERSISTENCE: slow, never aligned to the clock."""
    shocks = rng.normal(size=n) * np.sqrt(1 - PERSISTENCE**2)
    factor = np.empty(n)
    factor[0] = rng.normal()
    for i in range(1, n):
        factor[i] = PERSISTENCE * factor[i - 1] + shocks[i]
    return factor


def _candles(
    rng: np.random.Generator, *, drift: np.ndarray, noise: np.ndarray, share: np.ndarray,
    volume: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    n = len(noise)
    bounds = _span_bounds(n)
    for lo, hi in zip((0, *bounds), (*bounds, n), strict=True):
        noise[lo:hi] -= noise[lo:hi].mean()  # no span trends by chance
    close = 100 * np.exp(np.cumsum(drift + noise))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    index = pd.date_range(START, periods=n, freq="1h", tz="UTC", name="open_time")
    trades = rng.integers(1, 1000, n)
    return candle_frame(index, open_, high, low, close, volume, trades, np.clip(share, 0.05, 0.95))


def shaped_candles(
    shape: str, *, strength: float, seed: int, days: int | None = None
) -> pd.DataFrame:
    """Hourly candles from START with an edge of `shape` and `strength` (the drift's scale: a
    day's expected return per standard deviation of the signal)."""
    days = days or days_from_start(END)
    if shape == "day_aligned":
        return planted_candles(
            days, strength=strength, start=START, seed=seed,
            driftless=_span_bounds(24 * days),
        )  # fmt: skip
    rng = np.random.default_rng([seed, SHAPES.index(shape)])
    n = 24 * days
    x = _slow_factor(rng, n)
    share = 0.5 + 0.15 * x + rng.uniform(-0.1, 0.1, n)
    if shape == "trailing":
        signal, volume = x, rng.uniform(10, 100, n)
    elif shape == "interaction":
        y = _slow_factor(rng, n)
        volume = 50 * np.exp(0.5 * y + rng.normal(0, 0.3, n))
        signal = x * y
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    drift = (
        np.concatenate([[0.0], signal[:-1]]) * strength / 24
    )  # hour t's signal, hour t+1's drift
    noise = rng.normal(0, VOLATILITY, n)
    return _candles(rng, drift=drift, noise=noise, share=share, volume=volume)


def null_candles(*, seed: int, days: int | None = None) -> pd.DataFrame:
    """No edge: GARCH(1,1) with Student-t(5) innovations at VOLATILITY a year on average,
    driftless in every span, with shares and volumes that mean nothing."""
    from arch.univariate import GARCH, StudentsT, ZeroMean

    days = days or days_from_start(END)
    n = 24 * days
    rng = np.random.default_rng([seed, 99])
    alpha, beta, nu = 0.08, 0.9, 5.0
    model = ZeroMean(volatility=GARCH(), distribution=StudentsT(seed=rng))
    omega = VOLATILITY**2 * (1 - alpha - beta)
    simulated = model.simulate([omega, alpha, beta, nu], n, burn=1000)
    noise = simulated["data"].to_numpy(dtype=float)
    return _candles(
        rng, drift=np.zeros(n), noise=noise, share=rng.uniform(0.3, 0.7, n),
        volume=rng.uniform(10, 100, n),
    )  # fmt: skip


def oracle_positions(shape: str, frame: pd.DataFrame) -> pd.Series:
    """The one-line long-or-flat rule on the feature(s) that carry the shape's edge."""
    if shape == "day_aligned":  # decided at 00:00 UTC, held for the day
        decided = (frame.index + pd.Timedelta(hours=1)).hour == 0
        return (frame["taker_buy_24"] > 0.5).astype(float).where(decided).ffill().fillna(0.0)
    if shape == "trailing":
        return (frame["taker_buy_24"] > 0.5).astype(float)
    if shape == "interaction":
        product = (frame["taker_buy_24"] - 0.5) * np.log(frame["volume_ratio_30d"])
        return (product > 0).astype(float)
    raise ValueError(f"unknown shape {shape!r}")


def oracle_sharpe(frame: pd.DataFrame, shape: str = "day_aligned", *, cost: float = COST) -> float:
    """The oracle's annualised Sharpe ratio after costs over the out-of-sample span."""
    long = oracle_positions(shape, frame)
    span = (frame.index >= OUT_OF_SAMPLE) & (frame.index < END) & frame["next_return"].notna()
    returns = strategy_returns(
        long[span].to_numpy(), frame["next_return"][span].to_numpy(), cost=cost
    )
    return float(returns.mean() / returns.std(ddof=1) * np.sqrt(8760))


def planted_project(workdir: Path, *, strength: float, seed: int) -> pd.DataFrame:
    """Writes data/BTCUSDT/features.parquet and params.yaml (params.yaml as committed, with the
    split moved onto the synthetic years and the study and registry inside workdir) of a
    day-aligned series, and returns the feature frame."""
    candles = shaped_candles("day_aligned", strength=strength, seed=seed)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    frame = compute_features(
        candles, indicators=raw["features"]["indicators"], interval=candles.index.freq
    ).frame
    (workdir / "data/BTCUSDT").mkdir(parents=True, exist_ok=True)
    frame.to_parquet(workdir / "data/BTCUSDT/features.parquet")
    raw["split"] = dict(SPLIT)
    raw["tune"]["storage"] = f"sqlite:///{workdir}/optuna.db"
    raw["publish"]["registry"] = str(workdir / "registry")
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return frame
