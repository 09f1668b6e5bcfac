"""The XGBoost next-hour-direction classifier: hyperparameters, fitting, predicting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xgboost as xgb


@dataclass(frozen=True)
class HyperParams:
    """One point of the search space (the seed's seven knobs)."""

    n_estimators: int
    max_depth: int
    learning_rate: float
    subsample: float
    colsample_bytree: float
    gamma: float
    look_back_days: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HyperParams:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(values))
        if missing:
            raise ValueError(f"hyperparameters lack {missing}")
        return cls(**{k: values[k] for k in names})


def booster_params(hp: HyperParams, *, seed: int, nthread: int) -> dict:
    """The xgb.train parameters for hp. `hist` is what makes walk-forward tuning affordable."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_depth": hp.max_depth,
        "eta": hp.learning_rate,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "gamma": hp.gamma,
        "seed": seed,
        "nthread": nthread,
    }


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    hp: HyperParams,
    *,
    seed: int = 0,
    nthread: int = 0,
    feature_names: list[str] | None = None,
) -> xgb.Booster:
    """Trains a booster on one training window."""
    matrix = xgb.DMatrix(features, label=labels, feature_names=feature_names, nthread=nthread)
    return xgb.train(
        booster_params(hp, seed=seed, nthread=nthread), matrix, num_boost_round=hp.n_estimators
    )


def predict_proba(booster: xgb.Booster, features: np.ndarray) -> np.ndarray:
    """P(next candle closes higher) for every row."""
    names = booster.feature_names
    return booster.predict(xgb.DMatrix(features, feature_names=names), validate_features=False)
