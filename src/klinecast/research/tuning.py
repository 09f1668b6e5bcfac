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
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from klinecast import atomic
from klinecast.config import Params, SearchSpace
from klinecast.data.versions import file_digest
from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.research import portfolio, stats
from klinecast.research.backtest import (
    HOURS_PER_YEAR,
    BacktestResult,
    strategy_returns,
    walk_forward_with_params,
)
from klinecast.research.features import LABEL, NEXT_RETURN
from klinecast.research.model import Candidate
from klinecast.research.pooled import Pool, book_summary, walk_forward_pooled_with_params
from klinecast.retries import (
    DATABASE_RACE_SIGNS,
    GaveUp,
    Retryable,
    RetrySettings,
    call_with_retries,
)

log = logging.getLogger(__name__)
#: How a trial is scored (its hours, its folds, what it earns). Raise it with any change that
#: makes old trials incomparable with new ones: the study name changes, so a re-run starts a
#: fresh study instead of resuming one scored the old way. 2: every trial on the same hours;
#: 3: slippage, the trend baselines, cadence and anchored windows, no pruning.
SCORING_VERSION = 3

#: The declared baseline that the information ratio is measured against.
IR_BASELINE = "buy_and_hold"


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> Candidate:
    """Draws one point of the search space: the classifier, its window, its horizon and the rule.

    exit_band is capped at the trial's entry_band (the exit level is the nearer one); the
    capped value is what the trial trades and what best_params.json reports.
    """
    values = {}
    for name, kind in search_levers().items():
        bounds = getattr(space, name)
        if name in SearchSpace.CHOICES:
            values[name] = trial.suggest_categorical(name, list(bounds))
        elif kind is int:
            values[name] = trial.suggest_int(name, *bounds, log=name in SearchSpace.LOG_SCALE)
        else:
            values[name] = trial.suggest_float(name, *bounds, log=name in SearchSpace.LOG_SCALE)
    return candidate_of(values)


def capped_exit_band(entry_band: float, exit_band: float) -> float:
    """The exit band a rule trades: at most the entry band (a position is left nearer 0.5
    than it is entered)."""
    return min(entry_band, exit_band)


def search_levers() -> dict[str, type]:
    """Every lever of the search space (tune.search_space's keys) with the type of one value:
    what a Katib trial sets and `klinecast tune-trial` takes as flags."""
    hints = typing.get_type_hints(SearchSpace)
    return {f.name: typing.get_args(hints[f.name])[0] for f in dataclasses.fields(SearchSpace)}


def candidate_of(values: dict) -> Candidate:
    """The candidate of one value per lever (an Optuna or a Katib trial's): the exit band capped
    as tuning does, train_window read as the window's kind.

    Raises:
        ValueError: a lever is missing or a value is out of its rule's range.
    """
    values = dict(values)
    entry, exit_ = values.get("entry_band"), values.get("exit_band")
    if entry is not None and exit_ is not None:
        values["exit_band"] = capped_exit_band(entry, exit_)
    window = values.pop("train_window", None)
    if window is not None:
        if window not in ("sliding", "anchored"):
            raise ValueError(f"train_window: expected sliding or anchored, got {window!r}")
        values["anchored"] = window == "anchored"
    return Candidate.from_dict(values)


def objective_value(
    objective: str, returns: np.ndarray, baseline: np.ndarray | None = None
) -> float:
    """The tuning objective of hourly strategy returns after costs.

    sharpe_after_fees: the annualised Sharpe ratio (0 for a strategy that never trades);
    information_ratio: the annualised mean over the spread of the returns in excess of
    `baseline` (IR_BASELINE's hourly returns after its costs, on the same hours);
    return_after_fees: the cumulative return (rewards exposure in a rising market as much as
    skill: kept for comparison with older studies).
    """
    returns = np.asarray(returns, dtype=float)
    if objective == "return_after_fees":
        return float(np.prod(1.0 + returns)) - 1.0
    if objective == "information_ratio":
        if baseline is None:
            raise ValueError("the information ratio needs the baseline's returns")
        returns = returns - np.asarray(baseline, dtype=float)
    return stats.sharpe(returns) * float(np.sqrt(HOURS_PER_YEAR))


def in_sample_rows(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The feature rows of the in-sample span; tuning sees nothing else.

    The span's last row is kept for its features, but its label and next_return, which come
    from the candle after the span (the first out-of-sample candle), are blanked: that row is
    neither scored nor trained on.
    """
    span = params.split.in_sample
    rows = frame[span.holds(frame.index)].copy()
    after_span = rows.index + params.data.interval_delta >= pd.Timestamp(span.stop)
    rows.loc[after_span, [LABEL, NEXT_RETURN]] = np.nan
    return rows


def data_span(rows: pd.DataFrame, params: Params) -> dict:
    """Where the symbol's in-sample rows start against split.in_sample_start: a symbol listed
    later (or with less history than features.min_history before the span) is tuned and
    trained from its first usable hour, and the reports say so."""
    scored = rows[rows[LABEL].notna()]
    first = scored.index[0] if len(scored) else None
    later = first is not None and first >= params.split.in_sample.start + pd.Timedelta(days=1)
    return {
        "symbol": params.data.symbol,
        "in_sample_start": str(params.split.in_sample_start),
        "first_usable_hour": None if first is None else first.isoformat(),
        "starts_later": bool(later),
    }


def check_in_sample_span(rows: pd.DataFrame, params: Params) -> None:
    """Fails fast when the in-sample data cannot hold the longest look_back plus one step.

    Raises:
        KlinecastError: with the numbers and what to change.
    """
    if rows.empty:
        raise KlinecastError(
            f"no feature rows in the in-sample span {params.split.in_sample}; check "
            "split.in_sample_* against the data"
        )
    first, last = rows.index[0], rows.index[-1]
    problem = look_back_shortfall(
        params,
        days=(last - first).days,
        subject=f"the in-sample data ({first:%Y-%m-%d} .. {last:%Y-%m-%d}) spans",
    )
    if problem:
        raise KlinecastError(problem)


def look_back_shortfall(params: Params, *, days: int, subject: str) -> str | None:
    """Why `days` of in-sample data cannot hold the longest look_back plus one step, or None.

    Args:
        subject: what has those days, the message's start ("the in-sample span ... has").
    """
    longest = params.tune.search_space.look_back_days[1]
    step = params.backtest.step_days
    if longest + step <= days:
        return None
    return (
        f"{subject} {days} days, fewer than look_back_days high ({longest}) + step_days "
        f"({step}); lower tune.search_space.look_back_days or widen split.in_sample_*"
    )


def in_sample_walk_forward(
    rows: pd.DataFrame,
    params: Params,
    candidate: Candidate,
    *,
    nthread: int = 0,
    after_fold: Callable | None = None,
):
    """One trial's walk-forward over in-sample rows.

    Every trial is scored on the same hours: the first fold tests the search space's longest
    look_back_days after the span's first day, whatever this trial's look-back is. So every
    training window lies inside the span, trials compare on equal terms (a short look-back
    would otherwise be scored over months more of the market), and fold k is the same 30 days
    in every trial.
    """
    span = params.split.in_sample
    first_day = max(rows.index[0].floor("D"), pd.Timestamp(span.start))
    longest = max(params.tune.search_space.look_back_days[1], candidate.hp.look_back_days)
    return walk_forward_with_params(
        rows,
        params,
        candidate,
        test_start=first_day + pd.Timedelta(days=longest),
        test_end=pd.Timestamp(span.stop),
        nthread=nthread,
        after_fold=after_fold,
    )


def score(
    rows: pd.DataFrame,
    params: Params,
    candidate: Candidate,
    *,
    nthread: int = 0,
    on_fold: Callable[[int, float], None] | None = None,
) -> tuple[float, BacktestResult]:
    """tune.objective of one candidate over the in-sample walk-forward folds, after costs: the
    score of an Optuna trial, a Katib trial and `klinecast tune-trial` alike.

    Args:
        rows: in_sample_rows of the features.
        on_fold: called after each fold with its number and the objective so far (a Katib
            trial's intermediate metric).

    Returns:
        The objective, and the walk-forward it was computed from.
    """
    name, cost = params.tune.objective, params.backtest.cost

    def after_fold(fold, returns: np.ndarray, market: np.ndarray) -> None:
        if on_fold is not None:
            held = strategy_returns(np.ones(len(market)), market, cost=cost)
            on_fold(fold.number, objective_value(name, returns, held))

    result = in_sample_walk_forward(rows, params, candidate, nthread=nthread, after_fold=after_fold)
    predictions = result.predictions
    value = objective_value(
        name,
        predictions["strategy_return"].to_numpy(),
        predictions[f"{IR_BASELINE}_return"].to_numpy(),
    )
    return value, result


def score_pooled(
    frames: dict[str, pd.DataFrame],
    params: Params,
    candidate: Candidate,
    *,
    weights: dict[str, float],
    nthread: int = 0,
) -> tuple[float, dict[str, BacktestResult]]:
    """tune.objective of one candidate's pooled model over the in-sample folds: of the book,
    the symbols' after-cost returns combined at their weights (its information ratio against
    the buy-and-hold book). Every trial is scored on the same hours, as in `score`.

    Args:
        frames: symbol -> in_sample_rows of its features.
    """
    span = params.split.in_sample
    first = min(rows.index[0] for rows in frames.values())
    first_day = max(first.floor("D"), pd.Timestamp(span.start))
    longest = max(params.tune.search_space.look_back_days[1], candidate.hp.look_back_days)
    results = walk_forward_pooled_with_params(
        frames, params, candidate,
        test_start=first_day + pd.Timedelta(days=longest), test_end=pd.Timestamp(span.stop),
        nthread=nthread,
    )  # fmt: skip
    book = portfolio.combine(
        {s: r.predictions for s, r in results.items()}, weights, [IR_BASELINE]
    )
    value = objective_value(
        params.tune.objective, book[portfolio.MODEL].to_numpy(), book[IR_BASELINE].to_numpy()
    )
    return value, results


def in_sample_summary(result: BacktestResult) -> dict:
    """What a trial keeps of its walk-forward (user attrs; the report's in-sample column and the
    deflated Sharpe's inputs)."""
    returns = result.predictions["strategy_return"].to_numpy()
    m = result.model
    return {
        "folds": result.folds,
        "hours": m.hours,
        "return_after_fees": m.cumulative_return,
        "return_before_fees": m.return_before_fees,
        "accuracy": m.accuracy,
        "classifier_accuracy": m.classifier_accuracy,
        "sharpe": m.sharpe,
        "trades": m.trades,
        "exposure": m.exposure,
        "buy_and_hold_return": result.baselines[IR_BASELINE].cumulative_return,
        **stats.sharpe_moments(returns).as_dict(),  # the deflated Sharpe's inputs
    }


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


def ask_batch(
    study: optuna.Study, params: Params, *, size: int, stream: int = 0
) -> list[tuple[optuna.Trial, Candidate]]:
    """Asks `size` trials of a sampler seeded by tune.seed, `stream` and the number of trials
    so far: the same history gives the same batch, in any process.

    TPE's constant liar makes the batch's later asks treat its earlier ones as poor results,
    so one batch does not draw the same point twice.
    """
    seed = params.tune.seed + 1_000_003 * stream + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    batch = []
    for _ in range(size):
        trial = study.ask()
        trial.set_user_attr("stream", stream)
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


def pooled_in_sample(pool: Pool, params: Params) -> dict[str, pd.DataFrame]:
    """Each pooled symbol's in-sample rows; a symbol with none (listed after the span) is
    left out of tuning."""
    frames = {s: in_sample_rows(frame, params) for s, frame in pool.read().items()}
    return {s: rows for s, rows in frames.items() if len(rows)}


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

    Raises:
        KlinecastError: bad spans, an unreachable storage, or a trial or worker that failed
            (the trials told so far stay in the study, so a re-run resumes).
    """
    if pool is None:
        check_in_sample_span(in_sample_rows(pd.read_parquet(features_path), params), params)
        version = file_digest(features_path)
    else:
        frames = pooled_in_sample(pool, params)
        check_in_sample_span(
            max(frames.values(), key=lambda rows: rows.index[-1] - rows.index[0])
            if frames else pd.DataFrame(),
            params,
        )  # fmt: skip
        del frames
        version = pool.digest()
    name = name or study_name(params, data_version=version, pooled=pool)
    study = open_study(storage_url, name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fail_abandoned_trials(study, stream=first_worker)
    if complete_trials(study) >= n_trials:
        return study
    nthread = max(1, (os.cpu_count() or 1) // workers)
    source = pool if pool is not None else features_path
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
    return study


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
    return candidate_of(best.params | {"exit_band": best.user_attrs.get("exit_band_traded", 0.0)})


@dataclass(frozen=True)
class SearchRecord:
    """How much searching the study did, and the chosen trial's deflated Sharpe ratio."""

    trials_run: int  # every candidate that was scored
    complete: int
    failed: int
    trials_that_trade: int  # complete trials whose rule traded at least once in sample
    sharpe_variance: float  # of every trial's hourly Sharpe ratio
    #: the chosen trial's in-sample returns against the Sharpe that the best of trials_run
    #: unskilled trials would show (None when the trials lack their moments)
    deflated_sharpe: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def search_record(study: optuna.Study) -> SearchRecord:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    sharpes = [t.user_attrs["hourly_sharpe"] for t in complete if "hourly_sharpe" in t.user_attrs]
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    try:
        moments = stats.SharpeMoments.from_dict(study.best_trial.user_attrs)
        deflated = stats.deflated_sharpe(moments, trials=len(complete), sharpe_variance=variance)
    except (KeyError, ValueError):
        deflated = None
    return SearchRecord(
        trials_run=len(complete),
        complete=len(complete),
        failed=len(failed),
        trials_that_trade=sum(t.user_attrs.get("trades", 0) > 0 for t in complete),
        sharpe_variance=variance,
        deflated_sharpe=None if deflated is None or not np.isfinite(deflated) else deflated,
    )


@dataclass(frozen=True)
class BestParams:
    """best_params.json as evaluate and train read it."""

    candidate: Candidate
    search: dict  # SearchRecord's fields
    in_sample: dict  # the best trial's in-sample summary

    @classmethod
    def read(cls, path: Path) -> BestParams:
        """Raises KlinecastError for a file that tune did not write (or an older tune)."""
        try:
            document = json.loads(Path(path).read_text())
            return cls(
                Candidate.from_dict(document["params"]), document["search"], document["in_sample"]
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KlinecastError(
                f"{path} is not a best_params.json written by tune: {exc}"
            ) from None


@dataclass(frozen=True)
class TuningFiles:
    """Where the study's outputs go: best_params.json, trials.csv and Optuna's plots (HTML)."""

    best_params: Path
    trials: Path
    history: Path
    importances: Path | None = None
    parallel_coordinate: Path | None = None

    @classmethod
    def in_dir(cls, out_dir: Path) -> TuningFiles:
        """The layout of `klinecast tune --out-dir` (reports/tune)."""
        out_dir = Path(out_dir)
        return cls(
            out_dir / "best_params.json",
            out_dir / "trials.csv",
            out_dir / "optimization_history.html",
            out_dir / "param_importances.html",
            out_dir / "parallel_coordinate.html",
        )


def write_outputs(
    study: optuna.Study,
    files: TuningFiles,
    *,
    storage_url: str,
    objective: str,
    data_span: dict | None = None,
) -> dict:
    """Writes the study's best params (returned too), its trials and its plots.

    Args:
        data_span: `data_span`'s account of where the symbol's rows start.
    """
    candidate = best_candidate(study)
    trials = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "duration")
    )
    record = search_record(study)
    bookkeeping = ("exit_band_traded", "stream")
    in_sample = {k: v for k, v in study.best_trial.user_attrs.items() if k not in bookkeeping}
    summary = {
        "params": candidate.as_dict(),
        "value": study.best_value,
        "objective": f"{objective}, in-sample walk-forward",
        "best_trial": study.best_trial.number,
        "study_name": study.study_name,
        "storage": redact(storage_url),
        "trials": {"complete": record.complete, "failed": record.failed},
        "search": record.as_dict(),
        "in_sample": in_sample,
        "data": data_span or {},
    }
    atomic.write_json(files.best_params, summary)
    atomic.atomic_write(files.trials, lambda tmp: trials.to_csv(tmp, index=False))
    _write_plots(study, files)
    return summary


def _write_plots(study: optuna.Study, files: TuningFiles) -> None:
    from optuna import visualization as vis

    plots = {
        files.history: vis.plot_optimization_history,
        files.importances: vis.plot_param_importances,
        files.parallel_coordinate: vis.plot_parallel_coordinate,
    }
    for path, plot in plots.items():
        if path is None:
            continue
        try:
            figure = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ complete trials
            text = f"<html><body><p>{plot.__name__}: not available ({exc})</p></body></html>"
            atomic.atomic_write(path, lambda tmp, t=text: tmp.write_text(t))
            continue
        atomic.atomic_write(
            path,
            # plotly.js inline (about 4.7 MB): the page must work without internet
            lambda tmp, f=figure: f.write_html(tmp, include_plotlyjs=True, full_html=True),
        )
