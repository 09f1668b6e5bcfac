"""What a study leaves: best_params.json (the chosen candidate, the search record, its in-sample
figures), trials.csv and Optuna's plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from klinecast import atomic
from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.research import stats
from klinecast.research.model import Candidate
from klinecast.research.tuning.study import STARTUP_TRIALS, best_candidate, candidate_of_trial


@dataclass(frozen=True)
class SearchRecord:
    """How much searching was done on this in-sample span, and the chosen trial's deflated
    Sharpe ratio."""

    #: every trial of every study in the storage on the same symbol and in-sample span (this
    #: one's included): the deflated Sharpe's N
    trials_run: int
    complete: int  # this study's
    failed: int
    trials_that_trade: int  # complete trials whose rule traded at least once in sample
    #: of the hourly Sharpe ratios of the study's random start-up trials (TPE's later trials
    #: bunch near the best and would understate the spread that luck has)
    sharpe_variance: float
    #: the chosen trial's in-sample returns against the Sharpe that the best of trials_run
    #: unskilled trials would show (None when the trials lack their moments)
    deflated_sharpe: float | None
    #: how many trials the variance came from, and whether they were the random ones
    variance_trials: int = 0
    variance_from: str = "random start-up trials"

    def as_dict(self) -> dict:
        return asdict(self)


def search_record(study: optuna.Study, *, chosen_trial: int | None = None) -> SearchRecord:
    """The study's search record, the deflated Sharpe of `chosen_trial` (default: the best)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    moments_of = [t for t in complete if "hourly_sharpe" in t.user_attrs]
    # trials of an older klinecast lack the mark: the first STARTUP_TRIALS were the random ones
    random = [t for t in moments_of if t.user_attrs.get("random", t.number < STARTUP_TRIALS)]
    spread, source = (random, "random start-up trials") if len(random) > 1 else (moments_of, "every trial")
    sharpes = [t.user_attrs["hourly_sharpe"] for t in spread]
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    trials = max(int(study.user_attrs.get("trials_on_span", 0)), len(complete) + len(failed))
    picked = study.best_trial if chosen_trial is None else study.trials[chosen_trial]
    try:
        moments = stats.SharpeMoments.from_dict(picked.user_attrs)
        deflated = stats.deflated_sharpe(moments, trials=trials, sharpe_variance=variance)
    except (KeyError, ValueError):
        deflated = None
    return SearchRecord(
        trials_run=trials,
        complete=len(complete),
        failed=len(failed),
        trials_that_trade=sum(t.user_attrs.get("trades", 0) > 0 for t in complete),
        sharpe_variance=variance,
        deflated_sharpe=None if deflated is None or not np.isfinite(deflated) else deflated,
        variance_trials=len(sharpes),
        variance_from=source,
    )


@dataclass(frozen=True)
class BestParams:
    """best_params.json as evaluate and train read it."""

    candidate: Candidate
    search: dict  # SearchRecord's fields
    in_sample: dict  # the chosen trial's in-sample summary (the search's span)
    #: the chosen trial on the inner hold-out (tune.holdout_days; empty: none)
    holdout: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> BestParams:
        """Raises KlinecastError for a file that tune did not write (or an older tune)."""
        try:
            document = json.loads(Path(path).read_text())
            return cls(
                Candidate.from_dict(document["params"]), document["search"],
                document["in_sample"], document.get("holdout") or {},
            )  # fmt: skip
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


#: A trial's user attributes that are bookkeeping, not in-sample figures.
BOOKKEEPING = ("exit_band_traded", "stream")


def chosen(study: optuna.Study) -> BestParams:
    """The study's chosen candidate, its search record, its in-sample figures and its inner
    hold-out's: what best_params.json holds, without writing it. With a hold-out
    (tune.holdout_days), the chosen trial is the one the hold-out chose among the search's best;
    else the search's best.

    Raises:
        KlinecastError: the study has no complete trial.
    """
    best_candidate(study)  # (fails clearly when no trial completed)
    holdout = study.user_attrs.get("holdout") or {}
    trial = study.trials[holdout["trial"]] if holdout else study.best_trial
    in_sample = {k: v for k, v in trial.user_attrs.items() if k not in BOOKKEEPING}
    record = search_record(study, chosen_trial=trial.number)
    return BestParams(
        candidate_of_trial(trial),
        record.as_dict(),
        in_sample | {"trial": trial.number, "search_value": trial.value},
        {k: holdout[k] for k in ("value", "candidates")} | holdout.get("summary", {})
        if holdout else {},
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
    picked = chosen(study)
    trials = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "duration")
    )
    record = search_record(study, chosen_trial=picked.in_sample["trial"])
    summary = {
        "params": picked.candidate.as_dict(),
        "value": picked.in_sample["search_value"],
        "objective": f"{objective}, in-sample walk-forward",
        "best_trial": picked.in_sample["trial"],
        "study_name": study.study_name,
        "storage": redact(storage_url),
        "trials": {"complete": record.complete, "failed": record.failed},
        "search": picked.search,
        "in_sample": picked.in_sample,
        "holdout": picked.holdout,
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
