"""The data components: params, ingest, the reference's candles, each symbol's candles and
features, the pool, and the refresh's sync to the online store.

Each reads its Input[...] paths, calls one stage function of klinecast.stages (what `dvc repro`
runs through the CLI), writes its Output[...] paths and records metadata for the KFP UI. KFP
compiles a component's body into the pipeline YAML, so each body imports what it uses (from the
pipeline image).
"""

from typing import List  # noqa: UP035 (KFP reads typing.List in Input[List[...]])

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from klinecast.platform.kfp.image import COMPONENT


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
) -> List[str]:  # noqa: UP006
    """Writes the run's params.yaml (one argument per section) and fails the run at once if it
    is invalid. Returns the book's symbols, for the ParallelFors."""
    sections = {k: v for k, v in locals().items() if k != "params"}
    from klinecast.platform.kfp.params import checked_params_file

    return list(checked_params_file(sections, params.path).data.symbols)


@dsl.component(**COMPONENT)
def ingest(params: Input[Artifact], raw: Output[Dataset]):
    """Downloads and sha256-verifies every symbol's archives from data.base_url."""
    import datetime as dt
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.stages.ingest import ingest

    today = dt.datetime.now(dt.UTC).date()
    raw.metadata.update(ingest(load_params(params.path), raw=Path(raw.path), today=today).summary())


@dsl.component(**COMPONENT)
def reference(params: Input[Artifact], raw: Input[Dataset], reference: Output[Dataset]):
    """features.reference's candles for the cross-asset features (empty without them)."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.stages.candles import reference as stage

    found = stage(load_params(params.path), raw=Path(raw.path), out=Path(reference.path))
    reference.metadata.update(found.scalars() if found else {"rows": 0})


@dsl.component(**COMPONENT)
def candles(
    params: Input[Artifact],
    raw: Input[Dataset],
    symbol: str,
    candles: Output[Dataset],
    report: Output[Artifact],
):
    """A symbol's archives parsed and validated into one candle table (gaps reported)."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.stages.candles import candles as stage

    found = stage(
        load_params(params.path), symbol, raw=Path(raw.path), out=Path(candles.path),
        report=Path(report.path),
    )  # fmt: skip
    candles.metadata.update({"symbol": symbol, **found.scalars()})


@dsl.component(**COMPONENT)
def features(
    params: Input[Artifact],
    symbol: str,
    candles: Input[Dataset],
    reference: Input[Dataset],
    features: Output[Dataset],
    report: Output[Artifact],
):
    """A symbol's features and labels, with the function serving uses too."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.stages.features import features as stage

    found = stage(
        load_params(params.path), symbol, candles=Path(candles.path),
        reference=Path(reference.path), out=Path(features.path), report=Path(report.path),
    )  # fmt: skip
    features.metadata.update({"symbol": symbol, "rows": len(found.frame), "labeled": found.labeled})


@dsl.component(**COMPONENT)
def pool(
    params: Input[Artifact], features: Input[List[Dataset]], book: Output[Artifact]  # noqa: UP006
):
    """Every symbol's features in one folder laid out as a checkout's (what each symbol's
    research reads), and the pool: a pooled model's one study, run here for the whole book."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.platform.kfp.artifacts import lay_out
    from klinecast.stages.inputs import BookFeatures
    from klinecast.stages.pool import pool as stage

    config = load_params(params.path)
    layout = lay_out(config, Path(book.path), features=features)
    found = stage(config, features=BookFeatures.at(config, layout), out=layout.book.pool)
    book.metadata.update({"pooling": config.tune.pooling, "pooled": list(found.pooled)})


@dsl.component(**COMPONENT)
def features_sync(params: Input[Artifact], features: Input[List[Dataset]]):  # noqa: UP006
    """Writes the newly closed hours' feature rows of every symbol to the online store (the
    refresh's end; `features` only orders it after them). Where the store is comes from the
    environment (the klinecast-online ConfigMap)."""
    import datetime as dt

    import pandas as pd

    from klinecast.config import load_params
    from klinecast.serving.feature_sync import sync_store

    now = pd.Timestamp(dt.datetime.now(dt.UTC))
    results, where = sync_store(load_params(params.path), now=now)
    print(f"features sync: {'; '.join(map(str, results))} from {where}")
