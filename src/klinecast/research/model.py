"""The XGBoost direction classifier: hyperparameters, fitting, predicting, complexity.

A `Candidate` is one point of the whole search space: the classifier's hyperparameters, the
horizon of its label and the trading rule around it. Tuning picks one, evaluation walks it
forward, training fits it, and its metadata ships the rule to serving and the trader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from klinecast.research.strategy import StrategyRule

#: Histogram bins per feature (XGBoost's default is 256): 64 trains about a third faster on
#: these noisy features, and a quantile matrix built straight from them skips a copy.
MAX_BIN = 64


@dataclass(frozen=True)
class HyperParams:
    """The classifier's knobs and its training window (the seed's seven, and how the window
    is cut)."""

    n_estimators: int
    max_depth: int
    learning_rate: float
    subsample: float
    colsample_bytree: float
    gamma: float
    look_back_days: int
    #: all the history before a fold, not just its last look_back_days
    anchored: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HyperParams:
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise ValueError(f"hyperparameters lack {missing}")
        return cls(**{f.name: values[f.name] for f in fields if f.name in values})


def booster_params(hp: HyperParams, *, seed: int, nthread: int) -> dict:
    """The xgb.train parameters for hp. `hist` is what makes walk-forward tuning affordable."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_bin": MAX_BIN,
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
    matrix = xgb.QuantileDMatrix(
        features, label=labels, feature_names=feature_names, nthread=nthread, max_bin=MAX_BIN
    )
    return xgb.train(
        booster_params(hp, seed=seed, nthread=nthread), matrix, num_boost_round=hp.n_estimators
    )


def predict_proba(booster: xgb.Booster, features: np.ndarray) -> np.ndarray:
    """P(next candle closes higher) for every row."""
    names = booster.feature_names
    return booster.predict(xgb.DMatrix(features, feature_names=names), validate_features=False)


@dataclass(frozen=True)
class Candidate:
    """The classifier, the horizon of its label, and the trading rule around it."""

    hp: HyperParams
    rule: StrategyRule
    horizon_hours: int = 1

    def as_dict(self) -> dict:
        """Flat, as Optuna's trial params and best_params.json hold it."""
        return self.hp.as_dict() | self.rule.as_dict() | {"horizon_hours": self.horizon_hours}

    @classmethod
    def from_dict(cls, values: dict) -> Candidate:
        rule = dataclasses.fields(StrategyRule)
        required = {f.name for f in rule if f.default is dataclasses.MISSING}
        missing = sorted({*required, "horizon_hours"} - set(values))
        if missing:
            raise ValueError(f"the candidate lacks {missing}")
        return cls(
            HyperParams.from_dict(values), StrategyRule.from_dict(values), int(values["horizon_hours"])
        )


@dataclass(frozen=True)
class Complexity:
    """What the trees hold: a model with a handful of splits has learned next to nothing."""

    trees: int
    trees_that_split: int
    splits: int
    features_used: tuple[str, ...]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"features_used": list(self.features_used)}


def complexity(booster: xgb.Booster) -> Complexity:
    """Counts the trees, the trees with at least one split, the splits and the features used."""
    nodes = booster.trees_to_dataframe()
    splits = nodes[nodes["Feature"] != "Leaf"]
    return Complexity(
        trees=int(nodes["Tree"].nunique()),
        trees_that_split=int(splits["Tree"].nunique()),
        splits=len(splits),
        features_used=tuple(sorted(splits["Feature"].unique())),
    )


def feature_importance(booster: xgb.Booster, names: list[str]) -> dict[str, float]:
    """Each feature's share of the trees' total gain (0 for a feature no tree splits on)."""
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return {name: gain.get(name, 0.0) / total for name in names}
