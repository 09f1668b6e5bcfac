"""The hourly data refresh: validate-params, then for each symbol of data.symbols (a
ParallelFor): ingest -> candles -> features -> features-sync of that symbol.

Meant for a recurring run (`klinecast pipeline submit --pipeline refresh --cron ...`): new
closed hours are downloaded, verified and turned into features; a failure (bad archive,
checksum, gap rules) shows up within the hour instead of at the next training run. It ends by
writing the new hours' rows to the online store that the transformer reads by symbol.
"""

from kfp import dsl, kubernetes

import components as c
from klinecast.platform.feature_store import SYNC_LABEL
from klinecast.platform.names import ONLINE_CONFIG_MAP, ONLINE_KEYS, S3_KEYS, S3_SECRET
from klinecast.platform.pipeline_params import with_sections
from pipelines.steps import DEFAULTS, per_symbol, setup_step


def _store_access(sync) -> None:
    """The sync's store (ConfigMap), its S3 keys, and the label Redis's policy admits."""
    sync.set_caching_options(False)  # every hour has new rows to write
    kubernetes.use_config_map_as_env(sync, ONLINE_CONFIG_MAP, {k: k for k in ONLINE_KEYS})
    kubernetes.use_secret_as_env(sync, S3_SECRET, {k: k for k in S3_KEYS})
    # the label that Redis's NetworkPolicy admits (with the transformer's); the run must be in
    # the store's namespace, klinecast, for that policy to see this pod
    for key, value in SYNC_LABEL.items():
        kubernetes.add_pod_label(sync, key, value)


@dsl.pipeline(
    name="klinecast-refresh",
    description="Hourly: download + verify new Binance klines, rebuild candles and features",
)
@with_sections(DEFAULTS)
def refresh_pipeline(values: dict):
    with per_symbol(setup_step(values)) as (params, features):
        sync = c.features_sync(params=params, features=features.outputs["features"])
        _store_access(sync)
