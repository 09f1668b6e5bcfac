"""The training pipeline: data -> tuning fanned out over N workers -> evaluation -> gate ->
publish -> deploy. Every step is a components/ adapter over the same code `dvc repro` runs.

Compile with `klinecast pipeline compile` (writes training_pipeline.yaml next to this file);
run it locally with `klinecast pipeline run --local`, on a cluster with `klinecast pipeline
submit --host URL` or by uploading the YAML in the KFP UI.
"""

from kfp import dsl, kubernetes

import components as c
from pipelines.steps import DEFAULTS, OPTUNA_KEY, OPTUNA_SECRET, S3_SECRET, data_steps


def share_study(task):
    """The study's storage URL from the Secret: every worker pod joins one PostgreSQL study."""
    return kubernetes.use_secret_as_env(
        task, secret_name=OPTUNA_SECRET, secret_key_to_env={OPTUNA_KEY: "KLINECAST_OPTUNA_STORAGE"}
    )


@dsl.pipeline(
    name="klinecast-training",
    description=(
        "Binance klines -> TA-Lib features -> Optuna tuning (N workers, one PostgreSQL study) -> "
        "out-of-sample evaluation vs baselines -> gate -> registry -> InferenceService"
    ),
)
def training_pipeline(
    data_symbol: str = DEFAULTS["data_symbol"],
    data_interval: str = DEFAULTS["data_interval"],
    data_start: str = DEFAULTS["data_start"],
    data_end: str = DEFAULTS["data_end"],
    data_base_url: str = DEFAULTS["data_base_url"],
    features_indicators: list = DEFAULTS["features_indicators"],
    features_min_history: int = DEFAULTS["features_min_history"],
    split_in_sample_start: str = DEFAULTS["split_in_sample_start"],
    split_in_sample_end: str = DEFAULTS["split_in_sample_end"],
    split_out_of_sample_start: str = DEFAULTS["split_out_of_sample_start"],
    split_out_of_sample_end: str = DEFAULTS["split_out_of_sample_end"],
    backtest_step_days: int = DEFAULTS["backtest_step_days"],
    backtest_fee: float = DEFAULTS["backtest_fee"],
    backtest_neutral_band: float = DEFAULTS["backtest_neutral_band"],
    backtest_coin_flip_seed: int = DEFAULTS["backtest_coin_flip_seed"],
    tune_search_space: dict = DEFAULTS["tune_search_space"],
    tune_n_trials: int = DEFAULTS["tune_n_trials"],
    tune_seed: int = DEFAULTS["tune_seed"],
    tune_study_name: str = DEFAULTS["tune_study_name"],
    tune_storage: str = DEFAULTS["tune_storage"],
    tune_pruner_warmup_folds: int = DEFAULTS["tune_pruner_warmup_folds"],
    tune_pruner_startup_trials: int = DEFAULTS["tune_pruner_startup_trials"],
    publish_registry: str = DEFAULTS["publish_registry"],
    publish_model_name: str = DEFAULTS["publish_model_name"],
    publish_gate_baseline: str = DEFAULTS["publish_gate_baseline"],
    publish_gate_min_excess_return: float = DEFAULTS["publish_gate_min_excess_return"],
    trade_broker: str = DEFAULTS["trade_broker"],
    trade_inference_url: str = DEFAULTS["trade_inference_url"],
    trade_protocol: str = DEFAULTS["trade_protocol"],
    trade_ledger: str = DEFAULTS["trade_ledger"],
    trade_quantity: float = DEFAULTS["trade_quantity"],
    trade_max_quantity: float = DEFAULTS["trade_max_quantity"],
    trade_kill_switch_return: float = DEFAULTS["trade_kill_switch_return"],
    trade_retrain_min_accuracy: float = DEFAULTS["trade_retrain_min_accuracy"],
    trade_retrain_window: int = DEFAULTS["trade_retrain_window"],
    trade_retrain_cooldown_hours: int = DEFAULTS["trade_retrain_cooldown_hours"],
    tune_workers: int = 2,
    namespace: str = "klinecast",
):
    values = {k: v for k, v in locals().items() if k not in ("tune_workers", "namespace")}
    setup, features = data_steps(values, tune_workers=tune_workers)
    params, rows = setup.outputs["params"], features.outputs["features"]
    with dsl.ParallelFor(items=setup.outputs["Output"], name="tuning-workers") as worker:
        tuner = c.tune_worker(params=params, features=rows, worker=worker)
        share_study(tuner.set_cpu_request("1").set_cpu_limit("2").set_memory_limit("4Gi"))
    tuned = share_study(
        c.collect_tuning(params=params, features=rows, study_names=dsl.Collected(tuner.output))
    )
    best = tuned.outputs["best_params"]
    evaluation = c.evaluate(params=params, features=rows, best_params=best)
    trained = c.train(
        params=params,
        features=rows,
        best_params=best,
        metrics_json=evaluation.outputs["metrics_json"],
    )
    c.report(
        predictions=evaluation.outputs["predictions"],
        metrics_json=evaluation.outputs["metrics_json"],
        trials=tuned.outputs["trials"],
        model=trained.outputs["model"],
    )
    with dsl.If(evaluation.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
        published = c.publish(params=params, model=trained.outputs["model"])
        kubernetes.use_secret_as_env(
            published,
            secret_name=S3_SECRET,
            secret_key_to_env={k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
        )
        kubernetes.use_secret_as_env(
            published, S3_SECRET, {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}, optional=True
        )
        c.deploy(
            params=params, storage_uri=published.outputs["Output"], namespace=namespace
        ).set_caching_options(False)
