"""The training pipeline: for each symbol of data.symbols (a ParallelFor of
tune.symbols_in_parallel branches at once): data -> tuning fanned out over tune.workers pods ->
evaluation -> train (and the gate) -> publish -> deploy. Every step is a components/ adapter
over the same code `dvc repro` runs, with params narrowed to the branch's symbol.

Compile with `klinecast pipeline compile` (writes training_pipeline.yaml next to this file);
run it locally with `klinecast pipeline run --local`, on a cluster with `klinecast pipeline
submit --host URL` or by uploading the YAML in the KFP UI.
"""

from kfp import dsl, kubernetes

import components as c
from klinecast.config import variable_of
from klinecast.platform.k8s import NAMESPACE
from klinecast.platform.names import S3_ENDPOINT_KEY, S3_KEYS, S3_SECRET
from klinecast.platform.pipeline_params import with_sections
from pipelines.steps import DEFAULTS, OPTUNA_KEY, OPTUNA_SECRET, per_symbol, setup_step


def share_study(task):
    """The study's storage URL from the Secret: every worker pod joins one PostgreSQL study."""
    return kubernetes.use_secret_as_env(
        task, secret_name=OPTUNA_SECRET, secret_key_to_env={OPTUNA_KEY: variable_of("tune.storage")}
    )


def symbol_branch(params, rows, fanout, namespace) -> None:
    """One symbol: tuning over the workers, evaluation, train, the gate, publish, deploy."""
    with dsl.ParallelFor(items=fanout["workers"], name="tuning-workers") as worker:
        tuner = c.tune_worker(params=params, features=rows, worker=worker)
        share_study(tuner.set_cpu_request("1").set_cpu_limit("2").set_memory_limit("4Gi"))
    tuned = share_study(
        c.collect_tuning(params=params, features=rows, study_names=dsl.Collected(tuner.output))
    )
    best = tuned.outputs["best_params"]
    # the study's storage counts how often the out-of-sample span has been evaluated
    evaluation = share_study(c.evaluate(params=params, features=rows, best_params=best))
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
    with dsl.If(trained.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
        published = c.publish(params=params, model=trained.outputs["model"])
        kubernetes.use_secret_as_env(
            published,
            secret_name=S3_SECRET,
            secret_key_to_env={k: k for k in S3_KEYS},
        )
        kubernetes.use_secret_as_env(
            published, S3_SECRET, {S3_ENDPOINT_KEY: S3_ENDPOINT_KEY}, optional=True
        )
        c.deploy(
            params=fanout["params"], storage_uri=published.outputs["Output"], namespace=namespace
        ).set_caching_options(False)


@dsl.pipeline(
    name="klinecast-training",
    description=(
        "Binance klines -> TA-Lib features -> Optuna tuning (N workers, one PostgreSQL study) -> "
        "out-of-sample evaluation vs baselines -> train -> gate -> registry -> InferenceService"
    ),
)
@with_sections(DEFAULTS, namespace=(str, NAMESPACE))
def training_pipeline(values: dict):
    namespace = values["namespace"]
    setup = setup_step(values)
    with per_symbol(setup) as (params, features):
        symbol_branch(params, features.outputs["features"], setup, namespace)
