"""The tune stage: the Optuna study of a symbol's model, and its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from klinecast.book import Book
from klinecast.config import Params
from klinecast.research import tuning
from klinecast.stages.files import read_parquet
from klinecast.stages.inputs import BookFeatures


@dataclass(frozen=True)
class TuneResult:
    """What tune wrote to best_params.json (`summary`), and the study it came from."""

    study_name: str
    summary: dict

    @property
    def data_span(self) -> dict:
        return self.summary["data"]


def tune(
    params: Params,
    symbol: str,
    *,
    features: BookFeatures,
    out: tuning.TuningFiles,
    storage: str | None = None,
    n_trials: int | None = None,
    workers: int | None = None,
    first_worker: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Runs (or resumes) the symbol's study over walk-forward folds of the in-sample span,
    after costs, and writes its best params, its trials and its plots. A pooled model's study
    is the pool's (the pool stage runs it; here it is found complete).

    Args:
        params: the book's params.
        storage: the Optuna storage URL (default: tune.storage).
        n_trials: complete trials to reach (default: tune.n_trials).
        workers: trial processes (default: tune.workers).
        first_worker: 0 for a study's one tuner; tuners on several machines sharing one study
            pass distinct ids, which seed their batches apart.
        progress: called with (complete, n_trials) after every batch.

    Raises:
        KlinecastError: bad spans, a missing feature file, an unreachable storage, or a trial
            that failed (the complete trials stay in the study, so a re-run resumes).
    """
    settings = Book(params).for_symbol(symbol)
    storage = storage or params.tune.storage
    pool = features.pool(params)
    rows = read_parquet(features.of(symbol), produced_by=f"klinecast features --symbol {symbol}")
    study = tuning.tune(
        features_path=features.of(symbol),
        params=settings,
        storage_url=storage,
        n_trials=n_trials or params.tune.n_trials,
        workers=workers or params.tune.workers,
        first_worker=first_worker,
        progress=progress,
        pool=pool,
    )
    span = tuning.data_span(tuning.in_sample_rows(rows, settings), settings)
    if pool is not None:
        span["pooled"] = sorted(pool.paths)
    summary = tuning.write_outputs(
        study, out, storage_url=storage, objective=params.tune.objective, data_span=span
    )
    return TuneResult(study.study_name, summary)


def score_trial(
    params: Params,
    symbol: str,
    *,
    features: BookFeatures,
    candidate: tuning.Candidate,
    on_fold: Callable[[int, float], None] | None = None,
) -> float:
    """tune.objective of one candidate over the in-sample folds, after costs: what a trial of
    the symbol's study scores (a pooled model's: the book's objective over every pooled
    symbol). Katib's trials run it (`klinecast tune-trial`).

    Args:
        on_fold: called after each fold with its number and the objective so far (the
            symbol's own model; a pooled trial reports its result only).

    Raises:
        KlinecastError: a missing feature file, or an in-sample span too short for the space.
    """
    settings = Book(params).for_symbol(symbol)
    pool = features.pool(params)
    if pool is not None:
        frames = tuning.pooled_in_sample(pool, settings)
        value, _ = tuning.score_pooled(frames, settings, candidate, weights=pool.weights)
        return value
    rows = read_parquet(features.of(symbol), produced_by=f"klinecast features --symbol {symbol}")
    rows = tuning.in_sample_rows(rows, settings)
    tuning.check_in_sample_span(rows, settings)
    value, _ = tuning.score(rows, settings, candidate, on_fold=on_fold)
    return value
