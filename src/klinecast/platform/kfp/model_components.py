"""The research and release components: a symbol's branch (tune, evaluate, train), then the
book's publish (each symbol's gate among the book's), reports, portfolio and deploy.

Each reads its Input[...] paths, calls one stage function of klinecast.stages (what `dvc repro`
runs through the CLI) and writes its Output[...] paths, with metadata and metrics for the KFP
UI. KFP compiles a component's body into the pipeline YAML, so each body imports what it uses.
The book's features are the pool's folder (`klinecast.platform.kfp.artifacts`).
"""

from typing import List  # noqa: UP035 (KFP reads typing.List in Input[List[...]])

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

from klinecast.platform.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def tune(
    params: Input[Artifact],
    book: Input[Artifact],
    symbol: str,
    best_params: Output[Artifact],
    trials: Output[Dataset],
    history: Output[HTML],
):
    """The symbol's Optuna study (tune.workers processes; a pooled model's is the pool's)."""
    from pathlib import Path

    from klinecast.book import Layout
    from klinecast.config import load_params
    from klinecast.research.tuning import TuningFiles
    from klinecast.stages.inputs import BookFeatures
    from klinecast.stages.tune import tune as stage

    config = load_params(params.path)
    result = stage(
        config, symbol, features=BookFeatures.at(config, Layout(Path(book.path))),
        out=TuningFiles(Path(best_params.path), Path(trials.path), Path(history.path)),
    )  # fmt: skip
    best_params.metadata.update(
        {"symbol": symbol, "value": result.summary["value"], **result.summary["params"]}
    )
    trials.metadata.update({"symbol": symbol, **result.summary["trials"]})


@dsl.component(**COMPONENT)
def evaluate(
    params: Input[Artifact],
    book: Input[Artifact],
    symbol: str,
    best_params: Input[Artifact],
    metrics_json: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Out-of-sample walk-forward against the baselines, with the significance statistics."""
    from pathlib import Path

    from klinecast.book import Layout
    from klinecast.config import load_params
    from klinecast.research.evaluation import classification_summary
    from klinecast.stages.evaluate import EvaluationFiles
    from klinecast.stages.evaluate import evaluate as stage
    from klinecast.stages.inputs import BookFeatures

    config = load_params(params.path)
    result = stage(
        config, symbol, features=BookFeatures.at(config, Layout(Path(book.path))),
        best_params=Path(best_params.path),
        out=EvaluationFiles(Path(metrics_json.path), Path(predictions.path)),
    )  # fmt: skip
    metrics_json.metadata["symbol"] = predictions.metadata["symbol"] = symbol
    for name, value in result.scorecard.headline().items():
        metrics.log_metric(name, value)
    chart = classification_summary(result.predictions)
    classification.log_confusion_matrix(chart["categories"], chart["confusion_matrix"])
    classification.log_roc_curve(chart["fpr"], chart["tpr"], chart["thresholds"])


@dsl.component(**COMPONENT)
def train(
    params: Input[Artifact],
    book: Input[Artifact],
    symbol: str,
    best_params: Input[Artifact],
    metrics_json: Input[Artifact],
    model: Output[Model],
):
    """The final model on the last look_back days, as a registry artifact directory."""
    from pathlib import Path

    from klinecast.book import Layout
    from klinecast.config import load_params
    from klinecast.stages.inputs import BookFeatures
    from klinecast.stages.train import train as stage

    config = load_params(params.path)
    metadata = stage(
        config, symbol, features=BookFeatures.at(config, Layout(Path(book.path))),
        best_params=Path(best_params.path), metrics=Path(metrics_json.path), out=Path(model.path),
    )  # fmt: skip
    model.metadata.update(
        {"symbol": symbol, "model_name": metadata.model_name, "train_start": metadata.train_start,
         "train_end": metadata.train_end, "train_rows": metadata.train_rows}
    )  # fmt: skip


@dsl.component(**COMPONENT)
def publish(
    params: Input[Artifact],
    models: Input[List[Model]],  # noqa: UP006
    receipts: Output[Artifact],
    summary: Output[Markdown],
):
    """Every symbol's model into the registry (a version always), production only past its
    gate among the book's (Holm over the symbols' p-values); the receipts laid out as a
    checkout's, and the gates as the UI's summary."""
    import tempfile
    from pathlib import Path

    from klinecast.book import Book, Layout
    from klinecast.config import load_params
    from klinecast.platform.kfp.artifacts import lay_out
    from klinecast.release.report import book_summary
    from klinecast.stages.publish import publish as stage

    book, out = Book(load_params(params.path)), Layout(Path(receipts.path))
    with tempfile.TemporaryDirectory() as tmp:
        staged = lay_out(book.params, Path(tmp), candidate=models)
        artifacts = {s: staged.symbol(s).candidate for s in book.symbols}
        promotions = {
            s: stage(book.params, s, artifacts=artifacts, receipt=out.symbol(s).receipt)
            for s in book.symbols
        }
    Path(summary.path).write_text(book_summary(promotions))
    receipts.metadata.update({s: p.receipt.promoted for s, p in promotions.items()})


@dsl.component(**COMPONENT)
def report(
    params: Input[Artifact],
    predictions: Input[List[Dataset]],  # noqa: UP006
    metrics_json: Input[List[Artifact]],  # noqa: UP006
    trials: Input[List[Dataset]],  # noqa: UP006
    models: Input[List[Model]],  # noqa: UP006
    receipts: Input[Artifact],
    reports: Output[Artifact],
):
    """Every symbol's self-contained HTML report (equity, drawdown, accuracy, importance,
    tuning, the gate), laid out as a checkout's."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.platform.kfp.artifacts import include, lay_out
    from klinecast.stages.report import report as stage

    config = load_params(params.path)
    layout = lay_out(
        config, Path(reports.path), predictions=predictions, metrics=metrics_json, trials=trials,
        candidate=models,
    )  # fmt: skip
    include(layout, Path(receipts.path))
    for symbol in config.data.symbols:
        files = layout.symbol(symbol)
        stage(
            predictions=files.predictions, metrics=files.metrics, trials=files.trials,
            artifact=files.candidate, receipt=files.receipt, out=files.report,
        )  # fmt: skip


@dsl.component(**COMPONENT)
def portfolio(
    params: Input[Artifact],
    predictions: Input[List[Dataset]],  # noqa: UP006
    metrics_json: Input[List[Artifact]],  # noqa: UP006
    best_params: Input[List[Artifact]],  # noqa: UP006
    receipts: Input[Artifact],
    reports: Output[Artifact],
    figures: Output[Artifact],
    equity: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    """The book: every symbol's out-of-sample result combined, with its own gate beside the
    symbols' (the symbols' files gathered in `reports`, laid out as a checkout's)."""
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.platform.kfp.artifacts import include, lay_out
    from klinecast.stages.portfolio import PortfolioFiles
    from klinecast.stages.portfolio import portfolio as stage

    config = load_params(params.path)
    layout = lay_out(
        config, Path(reports.path), predictions=predictions, metrics=metrics_json,
        best_params=best_params,
    )  # fmt: skip
    include(layout, Path(receipts.path))
    out = PortfolioFiles(Path(figures.path), Path(equity.path), Path(page.path))
    book = stage(config, files_of=layout.symbol, out=out)
    metrics.log_metric("book_return", book.model.cumulative_return)
    metrics.log_metric("book_sharpe", book.model.sharpe)
    metrics.log_metric("book_gate_passed", float(book.gate.passed))
    figures.metadata.update({"traded": list(book.traded), "gate_passed": book.gate.passed})


@dsl.component(**COMPONENT)
def deploy(params: Input[Artifact], receipts: Input[Artifact], namespace: str):
    """Pins the book's InferenceService to each symbol's production version, once every symbol
    has published (`receipts` only orders it after them); outside a cluster it says so."""
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.platform.deploy import NO_CLUSTER, deploy_book

    book = Book(load_params(params.path))
    pinned, result = deploy_book(book, registry_uri=book.params.publish.registry, namespace=namespace)
    print(f"deploy: {result or NO_CLUSTER}; {namespace}/{book.service_name} -> {pinned.versions}")
