"""The Optuna study: TPE over the search space, walk-forward on the in-sample span, after costs.

A trial draws the classifier's hyperparameters and training window, its label's horizon and the
trading rule (side, entry and exit bands, minimum hold, decision cadence), and scores them by
`tune.objective` over purged walk-forward folds of the in-sample span. Every trial runs to its
end (no pruning), so TPE learns from every trial, and records its hourly Sharpe ratio, so the
deflated Sharpe can account for how many trials were tried and how far their Sharpe spread.

Trials are asked and told in seeded batches of `workers`: the parent asks a batch (its sampler
seeded by the seed and the number of trials so far), worker processes score it, and the parent
tells the results in trial order. So the same data, params and seed give the same study, the
same chosen trial and the same model, however the workers' timing falls. Trials live in an RDB
storage (a SQLite file by default, PostgreSQL in a cluster), so a study resumes after a crash or
a re-run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from klinecast.config import Params
from klinecast.data.versions import file_digest
from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.research.model import Candidate
from klinecast.research.pooled import Pool, book_summary
from klinecast.research.tuning.scoring import (
    SCORING_VERSION,
    check_in_sample_span,
    in_sample_rows,
    in_sample_summary,
    pooled_in_sample,
    score,
    score_holdout,
    score_pooled,
    search_params,
)
from klinecast.research.tuning.space import candidate_of, suggest_params
from klinecast.retries import (
    DATABASE_RACE_SIGNS,
    GaveUp,
    Retryable,
    RetrySettings,
    call_with_retries,
)

log = logging.getLogger(__name__)


def study_name(params: Params, *, data_version: str, pooled: Pool | None = None) -> str:
    """params.tune.study_name plus a fingerprint of everything that makes trials comparable.

    A re-run with the same data and settings resumes the same study; changing the data, the
    features, the spans, the fees, the search space or the scoring (SCORING_VERSION) starts a
    fresh one.
    """
    relevant = {
        "scoring": SCORING_VERSION,
        "data_version": data_version,
        "indicators": params.features.names,
        "in_sample": [str(params.split.in_sample_start), str(params.split.in_sample_end)],
        "backtest": asdict(params.backtest) | {"bootstrap_reps": None},  # not used in tuning
        "space": asdict(params.tune.search_space),
        "objective": params.tune.objective,
        "seed": params.tune.seed,
    }
    if pooled is not None:  # (absent for a symbol's own model: its studies keep their names)
        relevant["pooled"] = pooled.weights
    if params.tune.holdout_days:  # (absent without one: those studies keep their names)
        relevant["holdout_days"] = params.tune.holdout_days
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()
    return f"{params.tune.study_name}-{digest[:10]}"


def open_study(storage_url: str, name: str) -> optuna.Study:
    """Creates the study or loads it to resume (its sampler is set per batch: `ask_batch`)."""
    return optuna.create_study(
        storage=_rdb_storage(storage_url),
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.NopPruner(),
    )


#: The study storage's policy: 5 attempts, 0.2 s apart and doubling (schema races only).
STORAGE_RETRY = RetrySettings(attempts=5, backoff_s=0.2)


def _rdb_storage(storage_url: str) -> optuna.storages.RDBStorage:
    """Opens the storage; retries when another process is creating the same new schema.

    Two processes that open one brand-new database at once both try to create Optuna's
    tables, and the slower ones fail (DATABASE_RACE_SIGNS); by the next attempt the tables are there.
    """

    def attempt() -> optuna.storages.RDBStorage:
        try:
            return optuna.storages.RDBStorage(storage_url)
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or a server down
            reason = f"{type(exc).__name__}: {exc}"
            if any(sign in str(exc) for sign in DATABASE_RACE_SIGNS):
                raise Retryable(reason) from None
            raise KlinecastError(
                f"cannot open the Optuna storage {redact(storage_url)}: {reason}"
            ) from None

    try:
        return call_with_retries(
            attempt, settings=STORAGE_RETRY, what=f"Optuna storage {redact(storage_url)}", log=log
        )
    except GaveUp as exc:
        raise KlinecastError(
            f"cannot open the Optuna storage {redact(storage_url)}: {exc.reason}"
        ) from None


def complete_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def fail_abandoned_trials(study: optuna.Study, *, stream: int) -> int:
    """Fails the RUNNING trials of this stream (a tuner's first_worker), which a run of it that
    died left behind, so they neither linger nor sway the sampler; returns how many. Other
    streams' running trials may be another pod's, alive."""
    abandoned = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("stream", 0) == stream
    ]  # fmt: skip
    for trial in abandoned:
        study.tell(trial.number, state=TrialState.FAIL)
    if abandoned:
        log.warning("failed %d trial(s) left running by a tuner that stopped", len(abandoned))
    return len(abandoned)


#: TPE's random start-up trials (Optuna's default, named: the deflated Sharpe reads them).
STARTUP_TRIALS = 10


def span_key(params: Params, pool: Pool | None = None) -> str:
    """What makes two studies looks at the same in-sample hours: the symbol (or the pooled
    symbols) and the span, whatever the features, search space or code."""
    who = "pooled " + ",".join(sorted(pool.paths)) if pool is not None else params.data.symbol
    return f"{who} {params.split.in_sample}"


def trials_on_span(storage_url: str, key: str) -> int:
    """Every trial of every study in the storage on the same in-sample span (`span_key`): the
    deflated Sharpe's N. A study rerun with other features or another space is one more
    search of the same hours."""
    summaries = optuna.get_all_study_summaries(_rdb_storage(storage_url), include_best_trial=False)
    return sum(s.n_trials for s in summaries if s.user_attrs.get("span_key") == key)


def ask_batch(
    study: optuna.Study, params: Params, *, size: int, stream: int = 0
) -> list[tuple[optuna.Trial, Candidate]]:
    """Asks `size` trials of a sampler seeded by tune.seed, `stream` and the number of trials
    so far: the same history gives the same batch, in any process.

    TPE's constant liar makes the batch's later asks treat its earlier ones as poor results,
    so one batch does not draw the same point twice.
    """
    seed = params.tune.seed + 1_000_003 * stream + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=STARTUP_TRIALS
    )
    # TPE draws at random until it has STARTUP_TRIALS results: those trials are independent
    # draws of the space, what the deflated Sharpe's spread of Sharpe ratios should come from
    random = complete_trials(study) < STARTUP_TRIALS
    batch = []
    for _ in range(size):
        trial = study.ask()
        trial.set_user_attr("stream", stream)
        trial.set_user_attr("random", random)
        candidate = suggest_params(trial, params.tune.search_space)
        trial.set_user_attr("exit_band_traded", candidate.rule.exit_band)
        batch.append((trial, candidate))
    return batch


@dataclass(frozen=True)
class TrialOutcome:
    """What scoring one trial gives back to the study."""

    value: float
    summary: dict


class _Scorer:
    """Scores candidates on the in-sample rows; one lives in each worker process."""

    rows: pd.DataFrame | None = None
    pool: Pool | None = None
    frames: dict[str, pd.DataFrame] | None = None  # the pool's in-sample rows
    params: Params | None = None
    nthread: int = 1

    @classmethod
    def load(cls, source: str | Pool, params: Params, nthread: int) -> None:
        """Loads one feature file's in-sample rows, or every pooled symbol's (and forgets what
        an earlier study in this process loaded)."""
        cls.rows = cls.pool = cls.frames = None
        if isinstance(source, Pool):
            cls.pool, cls.frames = source, pooled_in_sample(source, params)
        else:
            cls.rows = in_sample_rows(pd.read_parquet(source), params)
        cls.params, cls.nthread = params, nthread

    @classmethod
    def start_worker(cls, source: str | Pool, params: Params, nthread: int) -> None:
        """A pool worker's initializer: it exits when the tuner that spawned it is gone (a
        killed tuner's workers would otherwise wait on their queue for ever), then loads."""
        tuner = os.getppid()

        def watch() -> None:
            while os.getppid() == tuner:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="tuner-watch", daemon=True).start()
        cls.load(source, params, nthread)

    @classmethod
    def score(cls, candidate: Candidate) -> TrialOutcome:
        if cls.pool is not None:
            value, results = score_pooled(
                cls.frames, cls.params, candidate, weights=cls.pool.weights, nthread=cls.nthread
            )
            return TrialOutcome(value, book_summary(results, cls.pool.weights))
        value, result = score(cls.rows, cls.params, candidate, nthread=cls.nthread)
        return TrialOutcome(value, in_sample_summary(result))


def tune(
    *,
    features_path: Path,
    params: Params,
    storage_url: str,
    n_trials: int,
    name: str | None = None,
    workers: int = 1,
    first_worker: int = 0,
    progress: Callable[[int, int], None] | None = None,
    pool: Pool | None = None,
    nthread: int | None = None,
) -> optuna.Study:
    """Runs (or resumes) the study until it holds n_trials complete trials, `workers` at a time.

    Args:
        name: the study's name (default: study_name of params and the feature file's hash).
        first_worker: 0 for the one tuner of a study; pods that share one study (the KFP
            ParallelFor) pass distinct ids, which seed their batches apart (such a study is not
            reproducible: which pod asks first is up to the scheduler).
        progress: called with (complete, n_trials) after every batch.
        pool: tune the pooled model of these symbols (features_path is then not read): one
            study, whatever symbol asks, which the first tune of the pool runs and the others
            find complete.
        nthread: XGBoost threads per worker (default: the machine's cores over `workers`; a
            benchmark that runs several studies at once gives each one).

    Raises:
        KlinecastError: bad spans, an unreachable storage, or a trial or worker that failed
            (the trials told so far stay in the study, so a re-run resumes).
    """
    searched = search_params(params)  # the span the search scores, before any hold-out
    if pool is None:
        check_in_sample_span(in_sample_rows(pd.read_parquet(features_path), searched), searched)
        version = file_digest(features_path)
    else:
        frames = [rows for rows in pooled_in_sample(pool, searched).values() if len(rows)]
        check_in_sample_span(
            max(frames, key=lambda rows: rows.index[-1] - rows.index[0])
            if frames else pd.DataFrame(),
            searched,
        )  # fmt: skip
        del frames
        version = pool.digest()
    name = name or study_name(params, data_version=version, pooled=pool)
    study = open_study(storage_url, name)
    study.set_user_attr("span_key", span_key(params, pool))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fail_abandoned_trials(study, stream=first_worker)
    nthread = nthread or max(1, (os.cpu_count() or 1) // workers)
    if complete_trials(study) < n_trials:
        _search(study, pool if pool is not None else features_path, params, n_trials=n_trials,
                workers=workers, first_worker=first_worker, nthread=nthread, progress=progress)  # fmt: skip
    if params.tune.holdout_days and pool is None and "holdout" not in study.user_attrs:
        study.set_user_attr("holdout", confirm_on_holdout(study, features_path, params, nthread))
    study.set_user_attr("trials_on_span", trials_on_span(storage_url, span_key(params, pool)))
    return study


def confirm_on_holdout(study: optuna.Study, features_path: Path, params: Params, nthread: int) -> dict:
    """Walks the search's tune.holdout_candidates best trials forward over the inner hold-out
    and chooses the best there: which trial, its hold-out figures, and every candidate's."""
    rows = in_sample_rows(pd.read_parquet(features_path), params)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-t.value, t.number))[: params.tune.holdout_candidates]
    scored = []
    for trial in ranked:
        value, result = score_holdout(rows, params, candidate_of_trial(trial), nthread=nthread)
        scored.append((value, trial.number, in_sample_summary(result)))
    value, number, summary = max(scored, key=lambda s: (s[0], -s[1]))
    return {
        "trial": number,
        "value": value,
        "summary": summary,
        "candidates": {str(n): v for v, n, _ in scored},
    }


def _search(
    study: optuna.Study, source: Path | Pool, params: Params, *, n_trials: int, workers: int,
    first_worker: int, nthread: int, progress: Callable[[int, int], None] | None,
) -> None:  # fmt: skip
    """Asks, scores and tells seeded batches until the study holds n_trials complete trials."""
    with _scoring_pool(source, params, workers=workers, nthread=nthread) as run:
        while (done := complete_trials(study)) < n_trials:
            batch = ask_batch(study, params, size=min(workers, n_trials - done), stream=first_worker)
            try:
                outcomes = run([candidate for _, candidate in batch])
            except BaseException as exc:
                for trial, _ in batch:
                    study.tell(trial, state=TrialState.FAIL)
                if isinstance(exc, KlinecastError) or not isinstance(exc, Exception):
                    raise
                raise KlinecastError(
                    f"a tuning trial failed ({type(exc).__name__}: {exc}); the {done} complete "
                    "trial(s) are kept in the study, so a re-run resumes"
                ) from exc
            for (trial, _), outcome in zip(batch, outcomes, strict=True):
                for key, value in outcome.summary.items():
                    trial.set_user_attr(key, value)
                study.tell(trial, outcome.value)
            if progress is not None:
                progress(complete_trials(study), n_trials)


class _scoring_pool:
    """A context that scores a batch of candidates: in this process for one worker, else in a
    pool of `workers` spawned processes that each load the rows once. Results come back in the
    batch's order."""

    def __init__(self, source: Path | Pool, params: Params, *, workers: int, nthread: int):
        self.args = (source if isinstance(source, Pool) else str(source), params, nthread)
        self.workers = workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> Callable[[list[Candidate]], list[TrialOutcome]]:
        if self.workers <= 1:
            _Scorer.load(*self.args)
            return lambda batch: [_Scorer.score(c) for c in batch]
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_Scorer.start_worker,
            initargs=self.args,
        )
        return self._run

    def _run(self, batch: list[Candidate]) -> list[TrialOutcome]:
        try:
            return list(self.pool.map(_Scorer.score, batch))
        except concurrent.futures.process.BrokenProcessPool:
            raise KlinecastError(
                "a tuning worker process died (out of memory, or killed); the complete trials "
                "are kept in the study, so a re-run resumes"
            ) from None

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def best_candidate(study: optuna.Study) -> Candidate:
    """The best complete trial's candidate, with the exit band it traded (capped at entry)."""
    try:
        best = study.best_trial
    except ValueError:
        raise KlinecastError(
            f"study {study.study_name} has no complete trial; every trial failed"
        ) from None
    return candidate_of_trial(best)


def candidate_of_trial(trial: optuna.trial.FrozenTrial) -> Candidate:
    """A complete trial's candidate, with the exit band it traded (capped at entry)."""
    return candidate_of(
        trial.params | {"exit_band": trial.user_attrs.get("exit_band_traded", 0.0)}
    )
