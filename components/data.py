"""validate-params -> ingest -> candles -> features."""

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
    tune_workers: int,
    params: Output[Artifact],
) -> list[int]:
    """Writes the run's params.yaml (one argument per section) and fails the run at once if it
    is invalid. Returns the tuning workers' ids, for the ParallelFor.
    """
    sections = {k: v for k, v in locals().items() if k not in ("params", "tune_workers")}
    import yaml

    from klinecast.cli import run_stage
    from klinecast.pipeline_params import params_from_sections

    with open(params.path, "w") as out:
        yaml.safe_dump(params_from_sections(sections), out, sort_keys=False)
    run_stage("validate-params", "--params", params.path, "--params-only")
    return list(range(max(1, tune_workers)))


@dsl.component(**COMPONENT)
def ingest(params: Input[Artifact], raw: Output[Dataset]):
    """Downloads and sha256-verifies the archives from data.base_url."""
    import os

    from klinecast.cli import run_stage

    run_stage("ingest", "--params", params.path, "--raw-dir", raw.path, "--no-progress")
    raw.metadata["archives"] = len([n for n in os.listdir(raw.path) if n.endswith(".zip")])


@dsl.component(**COMPONENT)
def candles(params: Input[Artifact], raw: Input[Dataset], candles: Output[Dataset]):
    """Parses and validates the archives into one candle table."""
    from klinecast.cli import run_stage_with_report

    candles.metadata.update(
        run_stage_with_report(
            "candles", "--params", params.path, "--raw-dir", raw.path, "--out", candles.path
        )
    )


@dsl.component(**COMPONENT)
def features(params: Input[Artifact], candles: Input[Dataset], features: Output[Dataset]):
    """TA-Lib features and labels, then params checked against them (before any tuning)."""
    from klinecast.cli import run_stage, run_stage_with_report

    features.metadata.update(
        run_stage_with_report(
            "features", "--params", params.path, "--candles", candles.path, "--out", features.path
        )
    )
    run_stage("validate-params", "--params", params.path, "--features", features.path)


@dsl.component(**COMPONENT)
def features_sync(params: Input[Artifact], features: Input[Dataset]):
    """Writes the newly closed hours' feature rows to the online store (the refresh's end).

    Where the store is comes from the environment (the klinecast-online ConfigMap).
    """
    from klinecast.cli import run_stage

    run_stage("features", "sync", "--params", params.path)
