"""evaluate (with the KFP UI's metrics and the gate) -> train -> report."""

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def evaluate(
    params: Input[Artifact],
    features: Input[Dataset],
    best_params: Input[Artifact],
    metrics_json: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    summary: Output[Markdown],
) -> bool:
    """Out-of-sample walk-forward against the baselines; returns whether the gate passed.

    (One unnamed bool output: kfp.local resolves a dsl.If condition only on an `Output`.)
    """
    import json
    import os
    import tempfile

    import pandas as pd

    from klinecast.cli import run_stage
    from klinecast.config import load_params
    from klinecast.evaluation import classification_summary, gate
    from klinecast.report import markdown_summary

    with tempfile.TemporaryDirectory() as tmp:
        run_stage(
            "evaluate", "--params", params.path, "--features", features.path,
            "--best-params", best_params.path, "--metrics", metrics_json.path,
            "--predictions", predictions.path, "--equity", os.path.join(tmp, "equity.csv"),
        )  # fmt: skip
    document = json.load(open(metrics_json.path))
    model = document["model"]
    for key in ("accuracy", "roc_auc", "sharpe", "cumulative_return", "max_drawdown"):
        metrics.log_metric(key, model[key] if model[key] is not None else float("nan"))
    for name, baseline in document["baselines"].items():
        metrics.log_metric(f"{name}_return", baseline["cumulative_return"])
    chart = classification_summary(pd.read_parquet(predictions.path))
    classification.log_confusion_matrix(chart["categories"], chart["confusion_matrix"])
    classification.log_roc_curve(chart["fpr"], chart["tpr"], chart["thresholds"])
    verdict = gate(document, load_params(params.path).publish)
    with open(summary.path, "w") as out:
        out.write(markdown_summary(document, verdict.as_dict()))
    metrics.log_metric("gate_excess_return", verdict.excess_return)
    return verdict.passed


@dsl.component(**COMPONENT)
def train(
    params: Input[Artifact],
    features: Input[Dataset],
    best_params: Input[Artifact],
    metrics_json: Input[Artifact],
    model: Output[Model],
):
    """The final model on the last look_back days, as a registry artifact directory."""
    import json

    from klinecast.cli import run_stage

    run_stage(
        "train", "--params", params.path, "--features", features.path,
        "--best-params", best_params.path, "--metrics", metrics_json.path, "--out", model.path,
    )  # fmt: skip
    metadata = json.load(open(f"{model.path}/metadata.json"))
    model.metadata.update(
        {k: metadata[k] for k in ("model_name", "train_start", "train_end", "train_rows")}
    )


@dsl.component(**COMPONENT)
def report(
    predictions: Input[Dataset],
    metrics_json: Input[Artifact],
    trials: Input[Dataset],
    model: Input[Model],
    report: Output[HTML],
):
    """The self-contained HTML report (equity, drawdown, accuracy, importance, tuning)."""
    from klinecast.cli import run_stage

    run_stage(
        "report", "--predictions", predictions.path, "--metrics", metrics_json.path,
        "--trials", trials.path, "--artifact", model.path, "--out", report.path,
    )  # fmt: skip
