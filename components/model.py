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
):
    """Out-of-sample walk-forward against the baselines, with the significance statistics."""
    import json
    import os
    import tempfile

    import pandas as pd

    from klinecast.cli import run_stage
    from klinecast.evaluation import classification_summary

    with tempfile.TemporaryDirectory() as tmp:
        run_stage(
            "evaluate", "--params", params.path, "--features", features.path,
            "--best-params", best_params.path, "--metrics", metrics_json.path,
            "--predictions", predictions.path, "--equity", os.path.join(tmp, "equity.csv"),
        )  # fmt: skip
    document = json.load(open(metrics_json.path))
    model, significance = document["model"], document["significance"]
    for key in ("cumulative_return", "return_before_fees", "sharpe", "max_drawdown", "accuracy",
                "classifier_accuracy", "roc_auc", "trades"):  # fmt: skip
        metrics.log_metric(key, model[key] if model[key] is not None else float("nan"))
    for key in ("p_value", "deflated_sharpe"):
        metrics.log_metric(key, significance[key])
    for name, baseline in document["baselines"].items():
        metrics.log_metric(f"{name}_return", baseline["cumulative_return"])
    chart = classification_summary(pd.read_parquet(predictions.path))
    classification.log_confusion_matrix(chart["categories"], chart["confusion_matrix"])
    classification.log_roc_curve(chart["fpr"], chart["tpr"], chart["thresholds"])


@dsl.component(**COMPONENT)
def train(
    params: Input[Artifact],
    features: Input[Dataset],
    best_params: Input[Artifact],
    metrics_json: Input[Artifact],
    model: Output[Model],
    summary: Output[Markdown],
) -> bool:
    """The final model on the last look_back days, as a registry artifact directory; returns
    whether it passes the publish gate (excess return, p-value, not degenerate).

    (One unnamed bool output: kfp.local resolves a dsl.If condition only on an `Output`.)
    """
    import json

    from klinecast.cli import run_stage
    from klinecast.cli.model import artifact_complexity
    from klinecast.config import load_params
    from klinecast.evaluation import gate
    from klinecast.report import markdown_summary

    run_stage(
        "train", "--params", params.path, "--features", features.path,
        "--best-params", best_params.path, "--metrics", metrics_json.path, "--out", model.path,
    )  # fmt: skip
    metadata = json.load(open(f"{model.path}/metadata.json"))
    verdict = gate(metadata["metrics"], artifact_complexity(metadata), load_params(params.path).publish)
    model.metadata.update(
        {k: metadata[k] for k in ("model_name", "train_start", "train_end", "train_rows")}
        | {"gate_passed": verdict.passed}
    )
    with open(summary.path, "w") as out:
        out.write(markdown_summary(metadata["metrics"], verdict.as_dict()))
    return verdict.passed


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
