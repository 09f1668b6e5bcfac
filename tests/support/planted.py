"""The planted-signal setup: synthetic years where one default feature carries a known daily
edge, written as a project directory the CLI runs in (the planted test and
benchmarks/planted_power.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from klinecast.research.backtest import strategy_returns
from klinecast.research.features import compute_features
from tests.support.candle_factory import planted_candles
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


def days_from_start(day: str) -> int:
    return (pd.Timestamp(day) - pd.Timestamp(START)).days


def planted_project(workdir: Path, *, strength: float, seed: int) -> pd.DataFrame:
    """Writes data/BTCUSDT/features.parquet and params.yaml (params.yaml as committed, with the split
    moved onto the synthetic years and the study and registry inside workdir) and returns the
    feature frame."""
    candles = planted_candles(
        days_from_start(END), strength=strength, start=START, seed=seed,
        driftless=tuple(24 * days_from_start(day) for day in (IN_SAMPLE, OUT_OF_SAMPLE)),
    )  # fmt: skip
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


def oracle_sharpe(frame: pd.DataFrame, *, cost: float = COST) -> float:
    """The one-line rule on the planted feature out of sample, after costs, annualised: long
    when the 24-hour taker-buy share is above one half, decided at 00:00 UTC, flat otherwise."""
    decided = (frame.index + pd.Timedelta(hours=1)).hour == 0
    long = (frame["taker_buy_24"] > 0.5).astype(float).where(decided).ffill().fillna(0.0)
    span = (frame.index >= OUT_OF_SAMPLE) & (frame.index < END) & frame["next_return"].notna()
    returns = strategy_returns(
        long[span].to_numpy(), frame["next_return"][span].to_numpy(), cost=cost
    )
    return float(returns.mean() / returns.std(ddof=1) * np.sqrt(8760))
