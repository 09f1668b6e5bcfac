"""metadata.json of a model artifact: everything needed to serve and to audit the model."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version

from klinecast.config import Params
from klinecast.evaluation import TrainedModel
from klinecast.model import Candidate, complexity

LIBRARIES = ("klinecast", "xgboost-cpu", "ta-lib", "numpy", "pandas", "optuna", "scikit-learn")


def library_versions() -> dict[str, str | None]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def artifact_metadata(
    trained: TrainedModel,
    *,
    params: Params,
    candidate: Candidate,
    metrics: dict,
    data_version: dict,
) -> dict:
    return {
        "model_name": params.publish.model_name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "symbol": params.data.symbol,
        "interval": params.data.interval,
        "feature_names": list(params.features.indicators),
        "min_history": params.features.min_history,
        "hyperparams": candidate.hp.as_dict(),
        "look_back_days": candidate.hp.look_back_days,
        "horizon_hours": candidate.horizon_hours,
        # the rule the model was tuned and evaluated with: serving and the trader apply it
        "strategy": candidate.rule.as_dict(),
        "complexity": complexity(trained.booster).as_dict(),
        "train_start": trained.train_start.isoformat(),
        "train_end": trained.train_end.isoformat(),
        "train_rows": trained.rows,
        "backtest": {"fee": params.backtest.fee, "step_days": params.backtest.step_days},
        "data_version": data_version,
        "metrics": metrics,
        "libraries": library_versions(),
    }
