"""What both pipelines share: their parameters (one per params.yaml section) and the data steps.

Importing this runs nothing: the defaults come from the typed config's (Params()), which a test
holds equal to params.yaml. `klinecast pipeline` imports pipelines/ with the repository's root
on sys.path, so `components` (beside `pipelines`) imports as a package.
"""

import components as c
from klinecast.config import Params
from klinecast.platform.names import POSTGRES_KEYS, POSTGRES_SECRET
from klinecast.platform.pipeline_params import SECTIONS, sections_of

#: params.yaml's sections, the defaults of the pipelines' section parameters.
DEFAULTS = sections_of(Params())
#: Secret and key holding the PostgreSQL URL of the shared Optuna study.
OPTUNA_SECRET, OPTUNA_KEY = POSTGRES_SECRET, POSTGRES_KEYS["optuna"]


def data_steps(values: dict):
    """validate-params -> ingest -> candles -> features; returns (setup, features) tasks."""
    setup = c.validate_params(**{name: values[name] for name in SECTIONS})
    setup.set_caching_options(False)  # cheap, and its params.yaml must match this run's values
    raw = c.ingest(params=setup.outputs["params"])
    raw.set_caching_options(False)  # new hours appear with the same inputs
    candles = c.candles(params=setup.outputs["params"], raw=raw.outputs["raw"])
    features = c.features(params=setup.outputs["params"], candles=candles.outputs["candles"])
    return setup, features
