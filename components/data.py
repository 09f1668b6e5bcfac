"""validate-params -> ingest -> candles -> features, and the refresh's sync to the online store."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def validate_params(
    data: dict,
    features: dict,
    split: dict,
    backtest: dict,
    tune: dict,
    publish: dict,
    online: dict,
    trade: dict,
    portfolio: dict,
    params: Output[Artifact],
) -> list[int]:
    """Writes the run's params.yaml (one argument per section) and fails the run at once if it
    is invalid. Returns the tuning workers' ids (tune.workers of them), for the ParallelFor.
    """
    sections = {k: v for k, v in locals().items() if k != "params"}
    from klinecast.config import load_params
    from klinecast.platform.pipeline_params import write_params_file
    from klinecast.research.validation import problems

    write_params_file(sections, params.path)
    config = load_params(params.path)
    found = problems(config)
    if found:
        raise ValueError("invalid params:\n" + "\n".join(found))
    return list(range(config.tune.workers))


@dsl.component(**COMPONENT)
def list_symbols(params: Input[Artifact]) -> list[str]:
    """data.symbols of the run's params, for the ParallelFor over symbols."""
    from klinecast.config import load_params

    return list(load_params(params.path).data.symbols)


@dsl.component(**COMPONENT)
def narrow_params(params: Input[Artifact], symbol: str, narrowed: Output[Artifact]):
    """The run's params.yaml narrowed to one symbol (Params.for_symbol): every step of that
    symbol's branch reads it, as `dvc repro`'s stages read --symbol."""
    from klinecast.config import load_params
    from klinecast.platform.pipeline_params import check_supported, sections_of, write_params_file

    config = load_params(params.path)
    check_supported(config)  # (the UI may set what kfp_runs refuses)
    write_params_file(sections_of(config.for_symbol(symbol)), narrowed.path)


@dsl.component(**COMPONENT)
def ingest(params: Input[Artifact], raw: Output[Dataset]):
    """Downloads and sha256-verifies the archives from data.base_url."""
    import datetime as dt
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.data.ingest import ingest

    today = dt.datetime.now(dt.UTC).date()
    result = ingest(load_params(params.path).data, raw_dir=Path(raw.path), today=today)
    raw.metadata.update(result.summary())


@dsl.component(**COMPONENT)
def candles(params: Input[Artifact], raw: Input[Dataset], candles: Output[Dataset]):
    """Parses and validates the archives into one candle table (gaps reported, not filled)."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.data.archives import symbol_dir
    from klinecast.data.build import build_candles

    data = load_params(params.path).data
    frame, report = build_candles(symbol_dir(Path(raw.path), data.symbol), data)
    frame.to_parquet(candles.path)
    candles.metadata.update(report.scalars())


@dsl.component(**COMPONENT)
def features(params: Input[Artifact], candles: Input[Dataset], features: Output[Dataset]):
    """TA-Lib features and labels, then params checked against them (before any tuning)."""
    import pandas as pd

    from klinecast.config import load_params
    from klinecast.research.features import compute_features
    from klinecast.research.validation import problems

    config = load_params(params.path)
    result = compute_features(
        pd.read_parquet(candles.path),
        indicators=config.features.indicators,
        interval=config.data.interval_delta,
    )
    result.frame.to_parquet(features.path)
    report = result.report(min_history=config.features.min_history)
    features.metadata.update({k: v for k, v in report.items() if not isinstance(v, list)})
    found = problems(config, result.frame)
    if found:
        raise ValueError("params do not fit the data:\n" + "\n".join(found))


@dsl.component(**COMPONENT)
def features_sync(params: Input[Artifact], features: Input[Dataset]):
    """Writes the newly closed hours' feature rows to the online store (the refresh's end).

    Where the store is comes from the environment (the klinecast-online ConfigMap).
    """
    import datetime as dt

    import pandas as pd

    from klinecast.config import load_params
    from klinecast.serving.feature_sync import sync_store

    now = pd.Timestamp(dt.datetime.now(dt.UTC))
    results, where = sync_store(load_params(params.path), now=now)
    print(f"features sync: {'; '.join(map(str, results))} from {where}")
