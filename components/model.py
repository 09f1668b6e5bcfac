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

    import pandas as pd

    from klinecast.config import load_params
    from klinecast.research import evaluation, looks
    from klinecast.research.tuning import BestParams

    config = load_params(params.path)
    result = evaluation.evaluate(
        pd.read_parquet(features.path), config, BestParams.read(best_params.path),
        span_looks=looks.record(
            config.tune.storage, config.split.out_of_sample, config.data.symbol
        ),
    )  # fmt: skip
    result.predictions.to_parquet(predictions.path)
    with open(metrics_json.path, "w") as out:
        json.dump(result.scorecard.as_dict(), out, indent=2)
    for name, value in result.scorecard.headline().items():
        metrics.log_metric(name, value)
    chart = evaluation.classification_summary(result.predictions)
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
    from pathlib import Path

    import pandas as pd

    from klinecast.config import load_params
    from klinecast.data.versions import data_version
    from klinecast.release import metadata as artifact
    from klinecast.release import registry
    from klinecast.release.gate import gate
    from klinecast.release.report import markdown_summary
    from klinecast.research.scorecard import Scorecard
    from klinecast.research.tuning import BestParams

    config = load_params(params.path)
    booster, metadata = artifact.final_model(
        pd.read_parquet(features.path),
        config,
        BestParams.read(best_params.path).candidate,
        metrics=Scorecard.read(metrics_json.path),
        data_version=data_version(Path(features.path)),
    )
    registry.write_artifact(Path(model.path), booster, metadata)
    verdict = gate(metadata.metrics, metadata.complexity, config.publish)
    model.metadata.update(
        {"model_name": metadata.model_name, "train_start": metadata.train_start,
         "train_end": metadata.train_end, "train_rows": metadata.train_rows,
         "gate_passed": verdict.passed}
    )  # fmt: skip
    Path(summary.path).write_text(markdown_summary(metadata.metrics, verdict))
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
    from pathlib import Path

    from klinecast.release.report import ReportInputs, render

    inputs = ReportInputs.read(
        predictions=Path(predictions.path),
        metrics=Path(metrics_json.path),
        trials=Path(trials.path),
        artifact=Path(model.path),
    )
    Path(report.path).write_text(render(inputs))
