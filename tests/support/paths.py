"""Where things are: the repository, and the shared fixtures beside it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The shared fixtures (the Binance mirror, the CRD schemas): ../shared beside the repo, or
#: $KLINECAST_SHARED where a CI runner mounts them elsewhere.
SHARED = Path(os.environ.get("KLINECAST_SHARED") or REPO.parent / "shared")
MIRROR = SHARED / "binance-mirror"
MIRROR_MONTHLY = MIRROR / "data/spot/monthly/klines/BTCUSDT/1h"
#: The mirror ends here; "today" in tests sits after it so every month in it is complete.
MIRROR_TODAY = dt.date(2022, 1, 15)
