"""KFP v2 components: one thin adapter per klinecast stage.

Each reads its Input[...] paths, calls the klinecast library functions that the CLI (and so
dvc.yaml) calls too, with typed values, writes its Output[...] paths and records metadata
and metrics for the KFP UI. The functions' bodies are compiled into the pipeline YAML, so
they import what they use (from the pipeline image).
"""

from components.data import (
    candles,
    features,
    features_sync,
    ingest,
    list_symbols,
    narrow_params,
    validate_params,
)
from components.model import evaluate, report, train
from components.release import deploy, publish
from components.tuning import collect_tuning, tune_worker

__all__ = [
    "candles",
    "collect_tuning",
    "deploy",
    "evaluate",
    "features",
    "features_sync",
    "ingest",
    "list_symbols",
    "narrow_params",
    "publish",
    "report",
    "train",
    "tune_worker",
    "validate_params",
]
