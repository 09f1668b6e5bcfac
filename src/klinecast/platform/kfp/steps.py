"""What both pipelines share: their parameters (one per params.yaml section) and the data steps.

Importing this runs nothing: the defaults come from the typed config's (Params()), which a test
holds equal to params.yaml.
"""

from contextlib import contextmanager

from kfp import dsl, kubernetes

from klinecast.config import Params
from klinecast.environment import variable_of
from klinecast.platform.kfp import data_components as c
from klinecast.platform.kfp.params import SECTIONS, sections_of
from klinecast.platform.names import (
    POSTGRES_KEYS,
    POSTGRES_SECRET,
    S3_ENDPOINT_KEY,
    S3_KEYS,
    S3_SECRET,
)

#: params.yaml's sections, the defaults of the pipelines' section parameters.
DEFAULTS = sections_of(Params())
#: How many symbols' branches run at once (ParallelFor's parallelism, fixed when compiling:
#: tune.symbols_in_parallel of params.yaml, which a test holds equal to Params()').
SYMBOLS_IN_PARALLEL = Params().tune.symbols_in_parallel


def setup_step(values: dict):
    """validate-params: the run's params.yaml (an artifact) and the book's symbols."""
    setup = c.validate_params(**{name: values[name] for name in SECTIONS})
    setup.set_caching_options(False)  # cheap, and its params.yaml must match this run's values
    return setup.outputs["params"], setup.outputs["Output"]


@contextmanager
def each_symbol(symbols, name: str):
    """A ParallelFor over the book's symbols, tune.symbols_in_parallel at once."""
    with dsl.ParallelFor(items=symbols, parallelism=SYMBOLS_IN_PARALLEL, name=name) as symbol:
        yield symbol


def data_steps(params, symbols):
    """ingest (every symbol) -> the reference's candles -> each symbol's candles -> features;
    returns the features tasks' outputs, collected."""
    raw = c.ingest(params=params)
    raw.set_caching_options(False)  # new hours appear with the same inputs
    reference = c.reference(params=params, raw=raw.outputs["raw"])
    with each_symbol(symbols, "symbol-data") as symbol:
        candles = c.candles(params=params, raw=raw.outputs["raw"], symbol=symbol)
        features = c.features(
            params=params, symbol=symbol, candles=candles.outputs["candles"],
            reference=reference.outputs["reference"],
        )  # fmt: skip
    return dsl.Collected(features.outputs["features"])


def share_study(task):
    """The study's storage URL from the Secret: the pool, the tuners and the evaluations of a
    run share one PostgreSQL study storage (and its count of looks at the span)."""
    return kubernetes.use_secret_as_env(
        task,
        secret_name=POSTGRES_SECRET,
        secret_key_to_env={POSTGRES_KEYS["optuna"]: variable_of("tune.storage")},
    )


def with_s3(task):
    """The S3 keys (and, optionally, the endpoint) of the registry."""
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_KEYS})
    kubernetes.use_secret_as_env(task, S3_SECRET, {S3_ENDPOINT_KEY: S3_ENDPOINT_KEY}, optional=True)
    return task
