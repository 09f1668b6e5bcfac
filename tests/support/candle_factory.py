"""Small synthetic candles and kline archives for unit tests."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd

from klinecast.data.candles import KLINE_COLUMNS

HOUR_MS = 3_600_000


def synthetic_candles(
    n: int,
    *,
    start: str = "2021-01-01",
    seed: int = 0,
    volatility: float = 0.01,
    driftless: tuple[int, ...] = (),
) -> pd.DataFrame:
    """A random-walk candle frame with n hourly rows that obeys every candle rule.

    Args:
        volatility: the standard deviation of the hourly log returns.
        driftless: row numbers that split the walk into spans; each span's log returns are
            shifted to a mean of exactly 0, so no span trends (a null without drift).
    """
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, volatility, n)
    for lo, hi in zip((0, *driftless), (*driftless, n), strict=True):
        if driftless:
            steps[lo:hi] -= steps[lo:hi].mean()
    close = 100 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(10, 100, n)
    index = pd.date_range(start, periods=n, freq="1h", tz="UTC", name="open_time")
    trades = rng.integers(1, 1000, n)
    taker_share = rng.uniform(0.3, 0.7, n)  # drawn last: earlier draws stay as they were
    return candle_frame(index, open_, high, low, close, volume, trades, taker_share)


def candle_frame(index, open_, high, low, close, volume, trades, taker_share) -> pd.DataFrame:
    """The candle columns from their parts (quote volumes at the close)."""
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": trades,
            "taker_buy_volume": volume * taker_share,
            "taker_buy_quote_volume": volume * close * taker_share,
        },
        index=index,
    )


def kline_rows(candles: pd.DataFrame, *, micros: bool = False) -> list[list[str]]:
    """The candles as Binance CSV rows (12 columns), in ms or µs timestamps."""
    unit = 1000 if micros else 1
    rows = []
    for ts, c in candles.iterrows():
        open_ms = ts.value // 1_000_000
        rows.append(
            [
                str(open_ms * unit),
                *(f"{c[k]:.8f}" for k in ("open", "high", "low", "close", "volume")),
                str((open_ms + HOUR_MS - 1) * unit),
                f"{c['quote_volume']:.8f}",
                str(int(c["trades"])),
                f"{c['taker_buy_volume']:.8f}",
                f"{c['taker_buy_quote_volume']:.8f}",
                "0",
            ]
        )
    return rows


def csv_bytes(rows: list[list[str]], *, header: bool = False) -> bytes:
    lines = [",".join(KLINE_COLUMNS)] if header else []
    lines += [",".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def planted_candles(
    days: int,
    *,
    strength: float,
    start: str = "2019-06-01",
    seed: int = 0,
    volatility: float = 0.006,
    driftless: tuple[int, ...] = (),
) -> pd.DataFrame:
    """Hourly candles with an edge planted at a day's horizon, in one default feature.

    Each UTC day d draws a standard normal z_d. Every hour of day d has a taker-buy share of
    0.5 + 0.05 z_d (plus uniform noise of +-0.1), so `taker_buy_24` read when day d's last
    candle closes is about 0.5 + 0.05 z_d; every hour of day d + 1 drifts by
    `strength` x z_d / 24 in log price, on top of independent normal noise of `volatility`.
    So the next day's return has mean strength x z_d: a daily signal with a correlation of
    about strength / (volatility x sqrt(24)) to it. Nothing else carries information.

    Args:
        driftless: row numbers (multiples of 24) that split the noise into spans, each shifted
            to a mean of 0, so no span trends by chance.
    """
    rng = np.random.default_rng(seed)
    n = 24 * days
    z = rng.normal(size=days)
    drift = np.repeat(np.concatenate([[0.0], z[:-1]]) * strength / 24, 24)
    noise = rng.normal(0, volatility, n)
    for lo, hi in zip((0, *driftless), (*driftless, n), strict=True):
        if driftless:
            noise[lo:hi] -= noise[lo:hi].mean()
    close = 100 * np.exp(np.cumsum(drift + noise))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.uniform(10, 100, n)
    share = np.clip(0.5 + 0.05 * np.repeat(z, 24) + rng.uniform(-0.1, 0.1, n), 0.05, 0.95)
    index = pd.date_range(start, periods=n, freq="1h", tz="UTC", name="open_time")
    trades = rng.integers(1, 1000, n)  # drawn after the share, as it always was
    return candle_frame(index, open_, high, low, close, volume, trades, share)
