"""The hourly data refresh: validate-params, ingest, then each symbol's candles and features,
then the sync of every symbol's newly closed hours to the online store.

Meant for a recurring run (`klinecast pipeline submit --pipeline refresh --cron ...`): new
closed hours are downloaded, verified and turned into features; a failure (bad archive,
checksum, gap rules) shows up within the hour instead of at the next training run. It ends by
writing the new hours' rows to the online store that the transformer reads by symbol.
"""

from kfp import dsl, kubernetes

from klinecast.platform.feature_store import SYNC_LABEL
from klinecast.platform.kfp import data_components as c
from klinecast.platform.kfp.params import with_sections
from klinecast.platform.kfp.steps import DEFAULTS, data_steps, setup_step
from klinecast.platform.names import ONLINE_CONFIG_MAP, ONLINE_KEYS, S3_KEYS, S3_SECRET


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
    params, symbols = setup_step(values)
    _store_access(c.features_sync(params=params, features=data_steps(params, symbols)))
