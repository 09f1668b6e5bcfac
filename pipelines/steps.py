"""What both pipelines share: their parameters (one per params.yaml section) and the data steps.

Importing this runs nothing: the defaults come from the typed config's (Params()), which a test
holds equal to params.yaml. `klinecast pipeline` imports pipelines/ with the repository's root
on sys.path, so `components` (beside `pipelines`) imports as a package.
"""

from contextlib import contextmanager

from kfp import dsl

import components as c
from klinecast.config import Params
from klinecast.platform.names import POSTGRES_KEYS, POSTGRES_SECRET
from klinecast.platform.pipeline_params import SECTIONS, sections_of

#: params.yaml's sections, the defaults of the pipelines' section parameters.
DEFAULTS = sections_of(Params())
#: How many symbols' branches run at once (ParallelFor's parallelism, fixed when compiling:
#: tune.symbols_in_parallel of params.yaml, which a test holds equal to Params()').
SYMBOLS_IN_PARALLEL = Params().tune.symbols_in_parallel
#: Secret and key holding the PostgreSQL URL of the shared Optuna study.
OPTUNA_SECRET, OPTUNA_KEY = POSTGRES_SECRET, POSTGRES_KEYS["optuna"]


def setup_step(values: dict):
    """validate-params (the run's params.yaml and the tuning workers' ids), and the symbols;
    returns their outputs: params, workers, symbols."""
    setup = c.validate_params(**{name: values[name] for name in SECTIONS})
    setup.set_caching_options(False)  # cheap, and its params.yaml must match this run's values
    symbols = c.list_symbols(params=setup.outputs["params"])
    symbols.set_caching_options(False)
    return {
        "params": setup.outputs["params"],
        "workers": setup.outputs["Output"],
        "symbols": symbols.output,
    }


def symbol_data_steps(params):
    """ingest -> candles -> features of the one symbol that params (narrowed) hold; returns
    the features task."""
    raw = c.ingest(params=params)
    raw.set_caching_options(False)  # new hours appear with the same inputs
    candles = c.candles(params=params, raw=raw.outputs["raw"])
    return c.features(params=params, candles=candles.outputs["candles"])


@contextmanager
def per_symbol(setup: dict):
    """A ParallelFor branch per symbol of data.symbols, tune.symbols_in_parallel at once; within
    it, yields the run's params narrowed to the branch's symbol and that symbol's features task
    (ingest -> candles -> features)."""
    with dsl.ParallelFor(
        items=setup["symbols"], parallelism=SYMBOLS_IN_PARALLEL, name="symbols"
    ) as symbol:
        params = c.narrow_params(params=setup["params"], symbol=symbol).outputs["narrowed"]
        yield params, symbol_data_steps(params)
