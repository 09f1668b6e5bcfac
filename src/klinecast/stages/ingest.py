"""The ingest stage: every symbol's verified archives from data.base_url."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from klinecast.config import Params
from klinecast.data.ingest import IngestResult
from klinecast.data.ingest import ingest as download


def ingest(
    params: Params,
    *,
    raw: Path,
    today: dt.date,
    base_url: str | None = None,
    workers: int = 8,
    progress: bool | None = None,
) -> IngestResult:
    """Downloads and sha256-verifies each symbol's archives into raw/<symbol>, skipping those
    already verified there.

    Args:
        today: the current UTC date (decides which months are complete).
        base_url: where the archives are (default: data.base_url).
        progress: show a progress bar; None shows it only on a terminal.
    """
    return download(
        params.data, raw_dir=raw, today=today, base_url=base_url, workers=workers,
        progress=progress,
    )  # fmt: skip
