"""validate-params -> ingest -> candles -> features."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def validate_params(
    data_symbol: str,
    data_interval: str,
    data_start: str,
    data_end: str,
    data_base_url: str,
    features_indicators: list,
    features_min_history: int,
    split_in_sample_start: str,
    split_in_sample_end: str,
    split_out_of_sample_start: str,
    split_out_of_sample_end: str,
    backtest_step_days: int,
    backtest_fee: float,
    backtest_neutral_band: float,
    backtest_coin_flip_seed: int,
    tune_search_space: dict,
    tune_n_trials: int,
    tune_seed: int,
    tune_study_name: str,
    tune_storage: str,
    tune_pruner_warmup_folds: int,
    tune_pruner_startup_trials: int,
    publish_registry: str,
    publish_model_name: str,
    publish_gate_baseline: str,
    publish_gate_min_excess_return: float,
    trade_broker: str,
    trade_inference_url: str,
    trade_protocol: str,
    trade_ledger: str,
    trade_quantity: float,
    trade_max_quantity: float,
    trade_kill_switch_return: float,
    trade_retrain_min_accuracy: float,
    trade_retrain_window: int,
    trade_retrain_cooldown_hours: int,
    tune_workers: int,
    params: Output[Artifact],
) -> list[int]:
    """Writes the run's params.yaml and fails the run at once if it is invalid.

    Returns the tuning workers' ids, for the ParallelFor.
    """
    flat = {k: v for k, v in locals().items() if k not in ("params", "tune_workers")}
    import yaml

    from klinecast.cli import run_stage
    from klinecast.config import unflatten

    with open(params.path, "w") as out:
        yaml.safe_dump(unflatten(flat), out, sort_keys=False)
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
