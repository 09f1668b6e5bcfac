"""The pool stage: what the book's symbols share before each one's research. With
tune.pooling: pooled, that is one model's study over every symbol's rows, run here once for the
whole book, so that each symbol's tune finds it complete (whichever runs first, in any order,
in parallel too). With per_symbol, nothing is shared, and the record is the same bytes every
time, so one symbol's new data reruns only its own stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.stages.inputs import BookFeatures


@dataclass(frozen=True)
class PoolRecord:
    """reports/pool.json: each pooled symbol's features digest and weight, and the study."""

    record: dict

    @property
    def pooled(self) -> tuple[str, ...]:
        return tuple(self.record.get("symbols", ()))


def pool(
    params: Params,
    *,
    features: BookFeatures,
    out: Path,
    storage: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PoolRecord:
    """Records the pool (and, for a pooled model, runs its study to tune.n_trials).

    Args:
        params: the book's params.
        storage: the Optuna storage URL (default: tune.storage).
        workers: trial processes (default: tune.workers).
        progress: called with (complete, n_trials) after every batch of the pooled study.

    Raises:
        KlinecastError: a pooled symbol's features are missing, or the study failed (its
            complete trials are kept).
    """
    from klinecast.research import tuning

    found = features.pool(params)
    if found is None:
        record = {"pooling": "per_symbol"}
    else:
        first = Book(params).symbols[0]  # the study is the pool's, whichever symbol asks
        study = tuning.tune(
            features_path=features.of(first),
            params=Book(params).for_symbol(first),
            storage_url=storage or params.tune.storage,
            n_trials=params.tune.n_trials,
            workers=workers or params.tune.workers,
            progress=progress,
            pool=found,
        )
        record = {"pooling": "pooled", **found.record(), "study": study.study_name}
    atomic.write_json(out, record)
    return PoolRecord(record)
