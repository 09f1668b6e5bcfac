"""A Feast online store in a test's own key space, synced from the shared mirror's archives."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from klinecast.config import Params
from klinecast.serving import feature_sync, online_store
from tests.support.paths import MIRROR
from tests.support.redis_server import drop_project


@contextmanager
def synced_store(redis: str, root: Path, clocks: Mapping[str, str]) -> Iterator:
    """A fresh project in redis with each symbol synced up to its clock (an ISO time), by the
    default params; the project's keys are dropped afterwards."""
    settings = online_store.StoreSettings(
        redis, str(root / "registry.db"), f"t{uuid.uuid4().hex[:12]}"
    )
    params = Params()
    today = pd.Timestamp(max(clocks.values())).date()
    source = feature_sync.archive_source(str(MIRROR), root / "archives", today=today)
    for symbol, now in clocks.items():
        one = dataclasses.replace(params, data=dataclasses.replace(params.data, symbols=(symbol,)))
        feature_sync.sync(one, settings=settings, source=source, now=pd.Timestamp(now))
    try:
        yield settings
    finally:
        drop_project(redis, settings.project)
