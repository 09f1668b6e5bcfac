"""What both pipelines share: their parameters (one per params.yaml section) and the data steps."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `components` sits beside `pipelines` at the repo root
    sys.path.insert(0, str(ROOT))

import components as c  # noqa: E402
from klinecast.cluster import POSTGRES_KEYS, POSTGRES_SECRET  # noqa: E402
from klinecast.pipeline_params import SECTIONS, section_defaults  # noqa: E402

#: params.yaml's sections, the defaults of the pipelines' section parameters.
DEFAULTS = section_defaults(ROOT / "params.yaml")
#: Secret and key holding the PostgreSQL URL of the shared Optuna study.
OPTUNA_SECRET, OPTUNA_KEY = POSTGRES_SECRET, POSTGRES_KEYS["optuna"]
#: Secret with the S3 credentials of the model registry (AWS_ENDPOINT_URL optional).
S3_SECRET = "klinecast-s3"


def data_steps(values: dict, *, tune_workers=1):
    """validate-params -> ingest -> candles -> features; returns (setup, features) tasks."""
    setup = c.validate_params(**{name: values[name] for name in SECTIONS}, tune_workers=tune_workers)
    setup.set_caching_options(False)  # cheap, and its params.yaml must match this run's values
    raw = c.ingest(params=setup.outputs["params"])
    raw.set_caching_options(False)  # new hours appear with the same inputs
    candles = c.candles(params=setup.outputs["params"], raw=raw.outputs["raw"])
    features = c.features(params=setup.outputs["params"], candles=candles.outputs["candles"])
    return setup, features
