"""The train stage: the final model on the last look_back days, as a registry artifact."""

from __future__ import annotations

from pathlib import Path

from klinecast.book import Book
from klinecast.config import Params
from klinecast.data.versions import data_version
from klinecast.release import metadata as artifact
from klinecast.release import registry
from klinecast.research.scorecard import Scorecard
from klinecast.research.tuning import BestParams
from klinecast.stages.files import read_parquet, require
from klinecast.stages.inputs import BookFeatures


def train(
    params: Params,
    symbol: str,
    *,
    features: BookFeatures,
    best_params: Path,
    metrics: Path,
    out: Path,
    dvc_file: Path | None = None,
) -> artifact.ArtifactMetadata:
    """Trains the symbol's model on the last look_back_days before the out-of-sample end and
    writes its artifact: model.json and metadata.json (its name in the registry, the feature
    order, params, training span, data version, the evaluation, library versions).

    Args:
        dvc_file: the raw data's `dvc add` file (data.dvc), whose hash the metadata records
            beside the features' (a KFP run has none).

    Raises:
        KlinecastError: a missing input; the previous artifact is left as it was.
    """
    produced_by = f"klinecast tune --symbol {symbol}"
    frame = read_parquet(features.of(symbol), produced_by=f"klinecast features --symbol {symbol}")
    pool = features.pool(params)
    booster, metadata = artifact.final_model(
        frame,
        Book(params).for_symbol(symbol),
        BestParams.read(require(best_params, produced_by=produced_by)).candidate,
        metrics=Scorecard.read(require(metrics, produced_by=f"klinecast evaluate --symbol {symbol}")),
        data_version=data_version(features.of(symbol), dvc_file=dvc_file),
        pool=pool.read() if pool else None,
    )
    registry.write_artifact(out, booster, metadata)
    return metadata
