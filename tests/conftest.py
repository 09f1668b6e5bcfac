"""Shared fixtures: the real Binance mirror, served over HTTP, and the candles built from it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from archive_server import ArchiveServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "binance-mirror"
MIRROR_MONTHLY = MIRROR / "data/spot/monthly/klines/BTCUSDT/1h"
#: The mirror ends here; "today" in tests sits after it so every month in it is complete.
MIRROR_TODAY = dt.date(2022, 1, 15)


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR_MONTHLY.is_dir():
        pytest.fail(f"the shared Binance mirror is missing: expected {MIRROR_MONTHLY}")
    return MIRROR


@pytest.fixture()
def mirror_server(mirror):
    with ArchiveServer(mirror) as server:
        yield server


@pytest.fixture(scope="session")
def mirror_candles(mirror):
    """The whole mirror as one validated candle frame (built once per session)."""
    from klinecast.config import DataParams
    from klinecast.data.build import build_candles

    candles, _ = build_candles(MIRROR_MONTHLY, DataParams(end=dt.date(2021, 12, 31)))
    return candles
