"""The training pipeline: the book's data (each symbol's candles and features), the pool, then
for each symbol (a ParallelFor of tune.symbols_in_parallel branches at once): tune -> evaluate
-> train; then the book's publish (each symbol's gate among the book's: Holm over their
p-values), reports, portfolio and one deploy. Every step is a component over the
stage function `dvc repro` runs.

Compile with `klinecast pipeline compile` (writes training_pipeline.yaml next to this file);
run it locally with `klinecast pipeline run --local`, on a cluster with `klinecast pipeline
submit --host URL` or by uploading the YAML in the KFP UI.
"""

from kfp import dsl

from klinecast.platform.k8s import NAMESPACE
from klinecast.platform.kfp import data_components as data
from klinecast.platform.kfp import model_components as c
from klinecast.platform.kfp.params import with_sections
from klinecast.platform.kfp.steps import (
    DEFAULTS,
    data_steps,
    each_symbol,
    setup_step,
    share_study,
    with_s3,
)

#: CPUs of a tune task: its tune.workers trial processes (Params()', as compiled).
TUNE_CPUS = str(DEFAULTS["tune"]["workers"])


def symbol_research(params, book, symbol) -> dict:
    """One symbol: tune, evaluate, train; returns the outputs the book's steps read."""
    tuned = share_study(c.tune(params=params, book=book, symbol=symbol))
    tuned.set_cpu_request(TUNE_CPUS).set_memory_limit("4Gi")
    best = tuned.outputs["best_params"]
    # the registry records each look at the out-of-sample span
    evaluation = with_s3(c.evaluate(params=params, book=book, symbol=symbol, best_params=best))
    metrics = evaluation.outputs["metrics_json"]
    trained = c.train(params=params, book=book, symbol=symbol, best_params=best, metrics_json=metrics)
    return {
        "predictions": evaluation.outputs["predictions"], "metrics_json": metrics,
        "best_params": best, "trials": tuned.outputs["trials"], "models": trained.outputs["model"],
    }  # fmt: skip


def book_release(params, outputs: dict, namespace):
    """The book: publish (each symbol's gate among the book's), the reports, the portfolio and
    one deploy, each over every symbol's outputs."""
    def collected(*names):  # (a Collected per consumer: KFP's compiler takes none twice)
        return {name: dsl.Collected(outputs[name]) for name in names}

    published = with_s3(c.publish(params=params, **collected("models")))
    receipts = published.outputs["receipts"]
    c.report(
        params=params, receipts=receipts,
        **collected("predictions", "metrics_json", "trials", "models"),
    )  # fmt: skip
    c.portfolio(
        params=params, receipts=receipts,
        **collected("predictions", "metrics_json", "best_params"),
    )  # fmt: skip
    deploy = with_s3(c.deploy(params=params, receipts=receipts, namespace=namespace))
    deploy.set_caching_options(False)


@dsl.pipeline(
    name="klinecast-training",
    description=(
        "Binance klines -> TA-Lib features -> the pool -> per symbol: Optuna tuning -> "
        "out-of-sample evaluation vs baselines -> train -> gate -> registry; -> the book's "
        "portfolio and InferenceService"
    ),
)
@with_sections(DEFAULTS, namespace=(str, NAMESPACE))
def training_pipeline(values: dict):
    params, symbols = setup_step(values)
    features = data_steps(params, symbols)
    pooled = share_study(data.pool(params=params, features=features))
    pooled.set_cpu_request(TUNE_CPUS).set_memory_limit("4Gi")
    with each_symbol(symbols, "symbol-research") as symbol:
        outputs = symbol_research(params, pooled.outputs["book"], symbol)
    book_release(params, outputs, values["namespace"])
