"""The evaluate stage: the tuned candidate walked forward out of sample, against the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.data.versions import file_digest
from klinecast.release import registry
from klinecast.research import evaluation
from klinecast.research.tuning import BestParams
from klinecast.stages.files import read_parquet, require
from klinecast.stages.inputs import BookFeatures


@dataclass(frozen=True)
class EvaluationFiles:
    metrics: Path  # the scorecard (metrics.json)
    predictions: Path  # per-hour predictions and positions (Parquet)
    equity: Path | None = None  # daily equity curves (dvc plots' CSV)


def evaluate(
    params: Params,
    symbol: str,
    *,
    features: BookFeatures,
    best_params: Path,
    out: EvaluationFiles,
) -> evaluation.Evaluation:
    """Retrains every backtest.step_days over the out-of-sample span with the tuned candidate
    and scores it and the baselines on the same hours, after costs; records one more look at
    the span in the registry (publish.registry), with the data and code version, and reports
    how many there have been.

    Raises:
        KlinecastError: a missing input, a span without rows, or a registry that cannot record.
    """
    settings = Book(params).for_symbol(symbol)
    frame = read_parquet(features.of(symbol), produced_by=f"klinecast features --symbol {symbol}")
    tuned = BestParams.read(require(best_params, produced_by=f"klinecast tune --symbol {symbol}"))
    pool = features.pool(params)
    span_looks = registry.record_look(
        registry.open_store(params.publish.registry),
        symbol=symbol,
        span=str(params.split.out_of_sample),
        data_version=f"features {file_digest(features.of(symbol))}",
        code_version=registry.code_version(),
    )
    result = evaluation.evaluate(
        frame, settings, tuned, span_looks=span_looks, pool=pool.read() if pool else None
    )
    atomic.write_parquet(out.predictions, result.predictions)
    if out.equity is not None:
        atomic.atomic_write(out.equity, lambda tmp: result.daily_equity().to_csv(tmp))
    atomic.write_json(out.metrics, result.scorecard.as_dict())
    return result
