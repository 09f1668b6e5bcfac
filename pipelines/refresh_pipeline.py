"""The hourly data refresh: validate-params -> ingest -> candles -> features.

Meant for a recurring run (`klinecast pipeline submit --pipeline refresh --cron ...`): new
closed hours are downloaded, verified and turned into features; a failure (bad archive,
checksum, gap rules) shows up within the hour instead of at the next training run.
"""

from kfp import dsl

from klinecast.pipeline_params import with_sections
from pipelines.steps import DEFAULTS, data_steps


@dsl.pipeline(
    name="klinecast-refresh",
    description="Hourly: download + verify new Binance klines, rebuild candles and features",
)
@with_sections(DEFAULTS)
def refresh_pipeline(values: dict):
    data_steps(values)
