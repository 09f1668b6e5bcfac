"""The Optuna study: TPE over the search space, walk-forward on the in-sample span, after fees.

A trial draws the classifier's hyperparameters, its label's horizon and the trading rule
(side, entry and exit bands, minimum hold), and scores them by `tune.objective` over purged
walk-forward folds of the in-sample span. Every trial records its hourly Sharpe ratio and its
trades, so the deflated Sharpe can later account for how many trials were tried.

Trials live in an RDB storage (a SQLite file by default, PostgreSQL in a cluster), so a study
resumes after a crash or a re-run, and any number of processes can work on it at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import typing
import warnings
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
from klinecast.research import stats
from klinecast.research.backtest import (
    HOURS_PER_YEAR,
    BacktestResult,
    strategy_returns,
    walk_forward_with_params,
)
from klinecast.research.features import LABEL, NEXT_RETURN
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import StrategyRule
from klinecast.retries import GaveUp, Retryable, RetrySettings, call_with_retries

log = logging.getLogger(__name__)
#: How a trial is scored (its hours, its folds, what it earns). Raise it with any change that
#: makes old trials incomparable with new ones: the study name changes, so a re-run starts a
#: fresh study instead of resuming one scored the old way. 2: every trial on the same hours.
SCORING_VERSION = 2

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: How losing a race to create the same new schema shows (SQLite and PostgreSQL wordings).
RACE_SIGNS = ("already exists", "database is locked", "UNIQUE constraint failed", "duplicate key")


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> Candidate:
    """Draws one point of the search space: the classifier, its horizon and the rule.

    exit_band is capped at the trial's entry_band (the exit level is the nearer one); the
    capped value is what the trial trades and what best_params.json reports.
    """
    hp = HyperParams(
        n_estimators=trial.suggest_int("n_estimators", *space.n_estimators),
        max_depth=trial.suggest_int("max_depth", *space.max_depth),
        learning_rate=trial.suggest_float("learning_rate", *space.learning_rate),
        subsample=trial.suggest_float("subsample", *space.subsample),
        colsample_bytree=trial.suggest_float("colsample_bytree", *space.colsample_bytree),
        gamma=trial.suggest_int("gamma", *space.gamma),
        look_back_days=trial.suggest_int("look_back_days", *space.look_back_days),
    )
    entry = trial.suggest_float("entry_band", *space.entry_band)
    rule = StrategyRule(
        side=trial.suggest_categorical("side", list(space.side)),
        entry_band=entry,
        exit_band=capped_exit_band(entry, trial.suggest_float("exit_band", *space.exit_band)),
        min_hold_hours=trial.suggest_int("min_hold_hours", *space.min_hold_hours),
    )
    return Candidate(hp, rule, trial.suggest_int("horizon_hours", *space.horizon_hours))


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
    """The candidate of one value per lever (a Katib trial's), exit band capped as tuning does.

    Raises:
        ValueError: a lever is missing or a value is out of its rule's range.
    """
    entry, exit_ = values.get("entry_band"), values.get("exit_band")
    if entry is not None and exit_ is not None:
        values = values | {"exit_band": capped_exit_band(entry, exit_)}
    return Candidate.from_dict(values)


def objective_value(
    objective: str, returns: np.ndarray, market: np.ndarray, *, fee: float
) -> float:
    """The tuning objective of hourly strategy returns after fees (market: next_returns).

    return_after_fees: the cumulative return; sharpe_after_fees: the annualised Sharpe ratio
    (0 for a strategy that never trades); excess_over_buy_and_hold: the cumulative return
    minus buy-and-hold's on the same hours, after its two fees.
    """
    total = float(np.prod(1.0 + returns)) - 1.0
    if objective == "return_after_fees":
        return total
    if objective == "sharpe_after_fees":
        return stats.sharpe(returns) * float(np.sqrt(HOURS_PER_YEAR))
    hold = float(np.prod(1.0 + strategy_returns(np.ones(len(market)), market, fee=fee))) - 1.0
    return total - hold


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
    in every trial, which the fold-median pruner relies on.
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
    """tune.objective of one candidate over the in-sample walk-forward folds, after fees: the
    score of an Optuna trial, a Katib trial and `klinecast tune-trial` alike.

    Args:
        rows: in_sample_rows of the features.
        on_fold: called after each fold with its number and the objective so far; it may
            raise to stop the walk-forward (the pruner).

    Returns:
        The objective, and the walk-forward it was computed from.
    """
    name, fee = params.tune.objective, params.backtest.fee

    def after_fold(fold, returns: np.ndarray, market: np.ndarray) -> None:
        if on_fold is not None:
            on_fold(fold.number, objective_value(name, returns, market, fee=fee))

    result = in_sample_walk_forward(rows, params, candidate, nthread=nthread, after_fold=after_fold)
    value = objective_value(
        name,
        result.predictions["strategy_return"].to_numpy(),
        result.predictions["next_return"].to_numpy(),
        fee=fee,
    )
    return value, result


def objective(
    frame: pd.DataFrame, params: Params, *, nthread: int
) -> Callable[[optuna.Trial], float]:
    """tune.objective over the in-sample walk-forward folds, after fees (`score`).

    Each fold reports the objective so far as an intermediate value, so the pruner can stop a
    hopeless trial early.
    """
    rows = in_sample_rows(frame, params)

    def run(trial: optuna.Trial) -> float:
        candidate = suggest_params(trial, params.tune.search_space)
        trial.set_user_attr("exit_band_traded", candidate.rule.exit_band)

        def report(fold: int, value: float) -> None:
            trial.report(value, fold)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_fold", fold)
                raise optuna.TrialPruned(f"pruned after fold {fold}: {value:.4f}")

        value, result = score(rows, params, candidate, nthread=nthread, on_fold=report)
        for key, summary in in_sample_summary(result).items():
            trial.set_user_attr(key, summary)
        return value

    return run


def in_sample_summary(result) -> dict:
    """What a trial keeps of its walk-forward (user attrs; the report's in-sample column)."""
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
        "hourly_sharpe": stats.sharpe(returns),  # the deflated Sharpe's trial spread
        "trades": m.trades,
        "exposure": m.exposure,
        "buy_and_hold_return": result.baselines["buy_and_hold"].cumulative_return,
    }


def study_name(params: Params, *, data_version: str) -> str:
    """params.tune.study_name plus a fingerprint of everything that makes trials comparable.

    A re-run with the same data and settings resumes the same study; changing the data, the
    features, the spans, the fees, the search space or the scoring (SCORING_VERSION) starts a
    fresh one.
    """
    relevant = {
        "scoring": SCORING_VERSION,
        "data_version": data_version,
        "indicators": params.features.indicators,
        "in_sample": [str(params.split.in_sample_start), str(params.split.in_sample_end)],
        "backtest": asdict(params.backtest) | {"bootstrap_reps": None},  # not used in tuning
        "space": asdict(params.tune.search_space),
        "objective": params.tune.objective,
        "seed": params.tune.seed,
    }
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()
    return f"{params.tune.study_name}-{digest[:10]}"


def open_study(storage_url: str, name: str, params: Params, *, worker: int = 0) -> optuna.Study:
    """Creates the study or loads it to resume. Stale RUNNING trials of a dead worker are
    failed after the grace period and retried once."""
    storage = _rdb_storage(storage_url)
    tune = params.tune
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=tune.seed + worker),
        pruner=FoldMedianPruner(
            n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=tune.pruner_warmup_folds
        ),
    )


#: The study storage's policy: 5 attempts, 0.2 s apart and doubling (schema races only).
STORAGE_RETRY = RetrySettings(attempts=5, backoff_s=0.2)


def _rdb_storage(storage_url: str) -> optuna.storages.RDBStorage:
    """Opens the storage; retries when another process is creating the same new schema.

    Two processes that open one brand-new database at once both try to create Optuna's
    tables, and the slower ones fail (RACE_SIGNS); by the next attempt the tables are there.
    """

    def attempt() -> optuna.storages.RDBStorage:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    storage_url,
                    heartbeat_interval=30,
                    grace_period=120,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=1
                    ),
                )
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or a server down
            reason = f"{type(exc).__name__}: {exc}"
            if any(sign in str(exc) for sign in RACE_SIGNS):
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


class FoldMedianPruner(optuna.pruners.BasePruner):
    """Prunes a trial whose return so far is below the median of finished trials at that fold.

    optuna's MedianPruner compares a trial's *best* intermediate value over all steps. For a
    running cumulative return, which starts near 0 and drifts, that best value is usually the
    first fold's, so it almost never prunes (0 of 41 trials on the mirror). This pruner compares
    the value at the current fold instead.
    """

    def __init__(self, *, n_startup_trials: int, n_warmup_steps: int):
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        if sum(t.state == TrialState.COMPLETE for t in finished) < self.n_startup_trials:
            return False
        others = [t.intermediate_values[step] for t in finished if step in t.intermediate_values]
        if not others:
            return False
        return trial.intermediate_values[step] < float(np.median(others))


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass(frozen=True)
class WorkerJob:
    storage_url: str
    study_name: str
    features_path: str
    params: Params
    n_trials: int
    nthread: int
    worker: int


def run_worker(job: WorkerJob, *, callbacks: tuple = ()) -> None:
    """Adds trials to the study until it holds job.n_trials finished ones."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(job.storage_url, job.study_name, job.params, worker=job.worker)
    if finished_trials(study) >= job.n_trials:
        return
    frame = pd.read_parquet(job.features_path)
    study.optimize(
        objective(frame, job.params, nthread=job.nthread),
        callbacks=[optuna.study.MaxTrialsCallback(job.n_trials, states=FINISHED), *callbacks],
    )


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
) -> optuna.Study:
    """Runs (or resumes) the study with `workers` processes sharing its storage.

    Args:
        name: the study's name (default: study_name of params and the feature file's hash).
        first_worker: the id of the first worker here; ids seed the samplers, so workers on
            other machines joining the same study pass distinct ids (a KFP ParallelFor item).
        progress: called with (finished, n_trials) while workers run.

    Raises:
        KlinecastError: bad spans, an unreachable storage, or a worker that failed.
    """
    frame = pd.read_parquet(features_path)
    check_in_sample_span(in_sample_rows(frame, params), params)
    name = name or study_name(params, data_version=file_digest(features_path))
    study = open_study(storage_url, name, params)  # creates it once, before workers race
    nthread = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = [
        WorkerJob(storage_url, name, str(features_path), params, n_trials, nthread, worker)
        for worker in range(first_worker, first_worker + workers)
    ]
    if workers <= 1:
        callbacks = () if progress is None else (_ProgressCallback(progress, n_trials),)
        run_worker(jobs[0], callbacks=callbacks)
        return study
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(job,)) for job in jobs]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=2)
            if progress is not None:
                progress(finished_trials(study), n_trials)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise KlinecastError(
            f"{len(failed)} tuning worker(s) failed (exit codes {failed}); "
            "finished trials are kept in the study, so a re-run resumes"
        )
    return study


class _ProgressCallback:
    def __init__(self, progress: Callable[[int, int], None], n_trials: int):
        self.progress = progress
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial) -> None:
        self.progress(finished_trials(study), self.n_trials)


def best_candidate(study: optuna.Study) -> Candidate:
    """The best complete trial's candidate, with the exit band it traded (capped at entry)."""
    try:
        best = study.best_trial
    except ValueError:
        raise KlinecastError(
            f"study {study.study_name} has no complete trial; every trial was pruned or failed"
        ) from None
    values = best.params | {"exit_band": best.user_attrs.get("exit_band_traded", 0.0)}
    return Candidate.from_dict(values)


@dataclass(frozen=True)
class SearchRecord:
    """How much searching the study did: what the deflated Sharpe has to discount."""

    trials_run: int  # complete + pruned: every candidate that was looked at
    complete: int
    pruned: int
    trials_that_trade: int  # complete trials whose rule traded at least once in sample
    sharpe_variance: float  # of the complete trials' hourly Sharpe ratios

    def as_dict(self) -> dict:
        return asdict(self)


def search_record(study: optuna.Study) -> SearchRecord:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    sharpes = [t.user_attrs["hourly_sharpe"] for t in complete if "hourly_sharpe" in t.user_attrs]
    return SearchRecord(
        trials_run=len(complete) + len(pruned),
        complete=len(complete),
        pruned=len(pruned),
        trials_that_trade=sum(t.user_attrs.get("trades", 0) > 0 for t in complete),
        sharpe_variance=float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0,
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
    study: optuna.Study, files: TuningFiles, *, storage_url: str, objective: str
) -> dict:
    """Writes the study's best params (returned too), its trials and its plots."""
    candidate = best_candidate(study)
    trials = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "duration")
    )
    record = search_record(study)
    in_sample = {k: v for k, v in study.best_trial.user_attrs.items() if k != "exit_band_traded"}
    summary = {
        "params": candidate.as_dict(),
        "value": study.best_value,
        "objective": f"{objective}, in-sample walk-forward",
        "best_trial": study.best_trial.number,
        "study_name": study.study_name,
        "storage": redact(storage_url),
        "trials": {"complete": record.complete, "pruned": record.pruned},
        "search": record.as_dict(),
        "in_sample": in_sample,
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
