"""`klinecast features sync` into a real Redis through Feast: from the mirror's archives over
HTTP and from a Binance REST endpoint, idempotent, equal to training's features, and intact
when Redis or the exchange fails midway.

`klinecast features sync` into a real Redis through Feast, from the mirror's archives over HTTP
and from a Binance REST endpoint: idempotent, equal to training's rows, an exchange failure that
writes nothing, Redis lost midway (a TCP cut-off in front of Redis) with the rows written kept
and the gap filled by the next sync, the command's exit codes, and `feast apply` on
`feature_repo/`.
"""

import numpy as np
import pandas as pd
import pytest

from klinecast.cli import main
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research.features import compute_features
from klinecast.serving import feature_sync, online_store
from tests.support.binance_server import BinanceServer
from tests.support.redis_server import Cutoff

pytestmark = pytest.mark.integration
PARAMS = Params()
NAMES = list(PARAMS.features.indicators)


def expected_row(candles: pd.DataFrame, hour: str) -> np.ndarray:
    """Training's row for the hour: compute_features on the whole history."""
    full = compute_features(candles, indicators=NAMES, interval=PARAMS.data.interval_delta).frame
    return full.loc[pd.Timestamp(hour, tz="UTC"), NAMES].to_numpy(dtype=float)


def stored(settings) -> online_store.OnlineRow | None:
    return online_store.newest_row(
        online_store.open_store(settings, NAMES, apply=False), "BTCUSDT", NAMES
    )


def archive_sync(settings, url, cache, now: str, **kwargs) -> feature_sync.SyncResult:
    now = pd.Timestamp(now)
    source = feature_sync.archive_source(url, cache, today=now.date())
    return feature_sync.sync(PARAMS, settings=settings, source=source, now=now, **kwargs)


def test_sync_from_the_archives_is_idempotent_and_writes_what_training_computes(
    online_settings, mirror_server, mirror_candles, tmp_path
):
    cache = tmp_path / "archives"
    first = archive_sync(online_settings, mirror_server.url, cache, "2021-12-01T00:05:00Z")
    assert (first.newest_before, first.written) == (None, 1)  # a new store: the newest hour
    row = stored(online_settings)
    assert row.candle_time == pd.Timestamp("2021-11-30 23:00", tz="UTC")
    np.testing.assert_allclose(row.features, expected_row(mirror_candles, "2021-11-30 23:00"))

    again = archive_sync(online_settings, mirror_server.url, cache, "2021-12-01T00:05:00Z")
    assert again.up_to_date and again.newest_after == first.newest_after  # idempotent

    month = archive_sync(online_settings, mirror_server.url, cache, "2022-01-01T00:05:00Z")
    assert month.written == 31 * 24  # every hour of December, in batches, oldest first
    row = stored(online_settings)
    assert row.candle_time == pd.Timestamp("2021-12-31 23:00", tz="UTC")
    np.testing.assert_allclose(row.features, expected_row(mirror_candles, "2021-12-31 23:00"))
    assert online_store.known_symbols(online_settings) == ["BTCUSDT"]


def test_sync_from_binance_rest(online_settings, mirror_candles):
    history = mirror_candles.loc[:"2021-12-31 23:00"]
    with BinanceServer(history) as exchange:
        source = feature_sync.binance_source(exchange.url)
        now = pd.Timestamp("2021-12-10T05:01:00Z")
        assert (
            feature_sync.sync(PARAMS, settings=online_settings, source=source, now=now).written == 1
        )
        later = now + pd.Timedelta(hours=4)
        result = feature_sync.sync(PARAMS, settings=online_settings, source=source, now=later)
    assert result.written == 4 and result.newest_after == pd.Timestamp("2021-12-10 08:00", tz="UTC")
    np.testing.assert_allclose(
        stored(online_settings).features, expected_row(mirror_candles, "2021-12-10 08:00")
    )


def test_an_exchange_failure_writes_nothing_and_keeps_the_store(online_settings, mirror_candles):
    with BinanceServer(mirror_candles.loc[:"2021-12-31 23:00"]) as exchange:
        source = feature_sync.binance_source(exchange.url)
        now = pd.Timestamp("2021-12-10T05:01:00Z")
        feature_sync.sync(PARAMS, settings=online_settings, source=source, now=now)
        exchange.fail_next = 10  # more than the client's retries
        with pytest.raises(KlinecastError, match="GET /api/v3/klines failed 4 times"):
            feature_sync.sync(
                PARAMS, settings=online_settings, source=source, now=now + pd.Timedelta(hours=3)
            )
    assert stored(online_settings).candle_time == pd.Timestamp("2021-12-10 04:00", tz="UTC")


def test_redis_lost_midway_keeps_the_rows_written_and_the_next_sync_completes_the_gap(
    online_settings, redis, mirror_server, tmp_path
):
    cutoff = Cutoff(redis)
    settings = online_store.StoreSettings(
        cutoff.address, online_settings.registry, online_settings.project
    )
    cache = tmp_path / "archives"
    try:
        archive_sync(settings, mirror_server.url, cache, "2021-12-01T00:05:00Z")
        batches = []

        def lose_redis_after_the_first_batch(rows: int) -> None:
            batches.append(rows)
            cutoff.cut()

        with pytest.raises(online_store.OnlineStoreError) as error:
            archive_sync(
                settings, mirror_server.url, cache, "2022-01-01T00:05:00Z",
                progress=lose_redis_after_the_first_batch,
            )  # fmt: skip
        assert batches == [online_store.WRITE_BATCH]
        assert "online store unreachable while writing BTCUSDT" in str(error.value)
        assert "the 200 row(s) up to 2021-12-09 07:00:00+00:00 are written" in str(error.value)
        cutoff.restore()
        assert stored(settings).candle_time == pd.Timestamp("2021-12-09 07:00", tz="UTC")
        rest = archive_sync(settings, mirror_server.url, cache, "2022-01-01T00:05:00Z")
        assert rest.written == 31 * 24 - 200
        assert stored(settings).candle_time == pd.Timestamp("2021-12-31 23:00", tz="UTC")
    finally:
        cutoff.close()


def test_the_sync_command(online_settings, mirror_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KLINECAST_REDIS", online_settings.redis)
    monkeypatch.setenv("KLINECAST_FEAST_REGISTRY", online_settings.registry)
    monkeypatch.setenv("KLINECAST_FEAST_PROJECT", online_settings.project)
    argv = ["features", "sync", "--base-url", mirror_server.url, "--now", "2021-12-01T00:05:00Z"]
    argv += ["--archive-cache", str(tmp_path / "archives")]
    assert main(argv) == 0
    assert "features sync: BTCUSDT: 1 new row(s)" in capsys.readouterr().out
    assert main(argv) == 0
    assert "nothing new for BTCUSDT" in capsys.readouterr().out
    # --redis names the store on the command line (here: where nothing listens)
    assert main([*argv, "--redis", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "klinecast features: error: online store 127.0.0.1:1 unreachable" in err
    assert "Traceback" not in err


def test_the_feature_repository_applies_with_feast_itself(online_settings, tmp_path):
    """`feast apply` in feature_repo/ registers what klinecast reads and writes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.support.paths import REPO

    env = {
        **os.environ,
        "KLINECAST_REDIS": online_settings.redis,
        "KLINECAST_FEAST_REGISTRY": online_settings.registry,
        "KLINECAST_FEAST_PROJECT": online_settings.project,
    }
    Path(online_settings.registry).parent.mkdir(parents=True, exist_ok=True)
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run(
        [feast, "apply"], cwd=REPO / "feature_repo", env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    store = online_store.open_store(online_settings, NAMES, apply=False)
    view = store.get_feature_view(online_store.FEATURE_VIEW)
    assert [f.name for f in view.features] == [online_store.CANDLE_TIME, *NAMES]
    assert [e for e in view.entities] == ["symbol"]


def test_the_sync_keeps_every_configured_symbol_fresh_and_names_one_that_fails(
    online_settings, mirror_server, tmp_path
):
    import dataclasses

    from klinecast.config import OnlineParams

    online = OnlineParams(
        redis=online_settings.redis, registry=online_settings.registry,
        project=online_settings.project,
    )  # fmt: skip
    params = dataclasses.replace(
        PARAMS,
        data=dataclasses.replace(PARAMS.data, symbols=("BTCUSDT", "ETHUSDT")),
        online=online,
    )
    now = pd.Timestamp("2022-06-01T00:05:00Z")  # the mirror's last hour has closed
    results, where = feature_sync.sync_store(
        params, now=now, base_url=mirror_server.url, archive_cache=tmp_path / "cache"
    )
    assert where == mirror_server.url
    assert [(r.symbol, r.written) for r in results] == [("BTCUSDT", 1), ("ETHUSDT", 1)]
    assert online_store.known_symbols(online_settings) == ["BTCUSDT", "ETHUSDT"]
    # a symbol the source lacks fails alone, named; the others are synced first
    params = dataclasses.replace(
        params, data=dataclasses.replace(params.data, symbols=("BTCUSDT", "DOGEUSDT"))
    )
    with pytest.raises(
        KlinecastError,
        match=r"(?s)features sync failed for 1 of 2 symbol\(s\) \(what was written stays; synced: "
        r"nothing new for BTCUSDT.*\):\n  DOGEUSDT: DOGEUSDT: the source has no 1h archives",
    ):
        feature_sync.sync_store(
            params, now=now, base_url=mirror_server.url, archive_cache=tmp_path / "cache"
        )


def test_a_cross_asset_row_in_the_store_is_the_one_training_computes(
    online_settings, mirror_server, mirror_candles, tmp_path
):
    """ETHUSDT with BTCUSDT's returns and volatility beside its own features: the sync reads
    both pairs' recent candles, and writes the row that training computes on full history."""
    import dataclasses

    from klinecast.research.features import symbol_features

    features = dataclasses.replace(PARAMS.features, cross_asset=("log_return_1", "rvol_24"))
    params = dataclasses.replace(
        PARAMS, features=features, data=dataclasses.replace(PARAMS.data, symbols=("ETHUSDT",))
    )
    names = list(features.names)
    assert names[-2:] == ["btcusdt_log_return_1", "btcusdt_rvol_24"]
    now = pd.Timestamp("2021-12-01T00:05:00Z")
    source = feature_sync.archive_source(mirror_server.url, tmp_path / "archives", today=now.date())
    assert feature_sync.sync(params, settings=online_settings, source=source, now=now).written == 1
    row = online_store.newest_row(
        online_store.open_store(online_settings, names, apply=False), "ETHUSDT", names
    )
    assert row.candle_time == pd.Timestamp("2021-11-30 23:00", tz="UTC")
    eth = source("ETHUSDT", "1h", pd.Timestamp("2021-01-01", tz="UTC"), row.candle_time)
    full = symbol_features(
        eth, features, interval=PARAMS.data.interval_delta,
        reference_candles=mirror_candles.loc[: row.candle_time],
    ).frame  # fmt: skip
    np.testing.assert_allclose(row.features, full.loc[row.candle_time, names].to_numpy(dtype=float))
