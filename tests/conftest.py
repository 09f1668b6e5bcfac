"""Shared fixtures: the real Binance mirror, served over HTTP, and the candles built from it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from tests.support.archive_server import ArchiveServer, wait_for_http
from tests.support.helpers import free_port
from tests.support.paths import MIRROR, MIRROR_MONTHLY

#: a model trained on the mirror and served for real: `artifact`, `serving`, `window`
pytest_plugins = ["tests.support.served_model"]


#: The longest modules, longest first (their time on 2 cores, `--durations`, 2026-12-05): the
#: main job (make run twice, about 200 s), kfp.local's runs (110 s), GitLab CI's jobs (100 s),
#: dvc (80 s) and the containers (70 s).
LONGEST = ("test_main_job.py", "test_pipeline_local.py", "test_gitlab_ci.py", "test_dvc.py",
           "test_containers.py")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, then the other end-to-end ones, then the rest in their own
    order. `make test`'s two workers take a module at a time in this order (`--dist loadfile
    --no-loadscope-reorder`; xdist's own order, by test count, ran GitLab CI's few long tests
    last, alone): the long ones start first and the short ones fill in after them."""

    end_to_end = {item.path for item in items if item.get_closest_marker("e2e")}

    def rank(item: pytest.Item) -> int:
        if item.path.name in LONGEST:
            return LONGEST.index(item.path.name)
        return len(LONGEST) + (item.path not in end_to_end)

    items.sort(key=rank)  # a stable sort: within a rank, the collection's order


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


@pytest.fixture(scope="session")
def moto_s3():
    """A real moto_server S3 endpoint on 127.0.0.1; yields its URL and credentials env."""
    import subprocess

    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process=process)
        yield {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL URL (database `test`): the machine's, or a private server started here."""
    from tests.support.pg_server import postgres_url

    with postgres_url(free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def redis():
    """ "host:port" of a Redis: the machine's, or a private redis-server started here."""
    from tests.support.redis_server import redis_address

    with redis_address(free_port()) as address:
        yield address


@pytest.fixture()
def online_settings(redis, tmp_path):
    """A Feast project of this test's own (its own key space in Redis), removed afterwards."""
    import uuid

    from klinecast.serving.online_store import StoreSettings
    from tests.support.redis_server import drop_project

    settings = StoreSettings(
        redis, str(tmp_path / "feast/registry.db"), f"t{uuid.uuid4().hex[:12]}"
    )
    yield settings
    drop_project(redis, settings.project)
