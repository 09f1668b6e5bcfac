"""What a study leaves: best_params.json (the chosen candidate, the search record, its in-sample
figures), trials.csv and Optuna's plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from klinecast import atomic
from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.research import stats
from klinecast.research.model import Candidate
from klinecast.research.tuning.study import best_candidate


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


#: A trial's user attributes that are bookkeeping, not in-sample figures.
BOOKKEEPING = ("exit_band_traded", "stream")


def chosen(study: optuna.Study) -> BestParams:
    """The study's chosen candidate, its search record and its in-sample figures: what
    best_params.json holds, without writing it.

    Raises:
        KlinecastError: the study has no complete trial.
    """
    candidate = best_candidate(study)
    in_sample = {k: v for k, v in study.best_trial.user_attrs.items() if k not in BOOKKEEPING}
    return BestParams(candidate, search_record(study).as_dict(), in_sample)


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
    record = search_record(study)
    summary = {
        "params": picked.candidate.as_dict(),
        "value": study.best_value,
        "objective": f"{objective}, in-sample walk-forward",
        "best_trial": study.best_trial.number,
        "study_name": study.study_name,
        "storage": redact(storage_url),
        "trials": {"complete": record.complete, "failed": record.failed},
        "search": picked.search,
        "in_sample": picked.in_sample,
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
