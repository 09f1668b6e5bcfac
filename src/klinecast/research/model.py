"""The XGBoost direction classifier: hyperparameters, fitting, predicting, complexity.

Four levers for weak signals live here, each a hyperparameter that tuning may search:

- `booster`: XGBoost's trees (`gbtree`) or its linear booster (`gblinear`): a logistic
  regression with L1 and L2 penalties, fitted by coordinate descent on features standardised
  on the training rows, its weights then written back on the features' own scale, so the
  model reads (and serving sends) the raw features as a tree model does. A weak edge that is
  monotone in a feature is one weight to a linear model and many noisy splits to trees;
- `n_features`: keep only the k features that a small booster fitted on the training rows
  (and nothing else) finds most useful (total gain), so an edge in a few features is not
  drowned by many that carry nothing. The other columns are set missing for the fit, so the
  booster never splits on them and the model still reads (and serving still sends) every
  feature in the same order;
- `parallel_trees`: XGBoost's `num_parallel_tree`, a bag of trees per round, each on its own
  subsample, averaged: steadier probabilities from one model file;
- `sample_weights`: `uniqueness` weighs each training row by its label's average uniqueness
  (López de Prado), so overlapping multi-hour labels do not count one market move h times.

A `Candidate` is one point of the whole search space: the classifier's hyperparameters, the
horizon of its label and the trading rule around it. Tuning picks one, evaluation walks it
forward, training fits it, and its metadata ships the rule to serving and the trader.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from klinecast.research.strategy import StrategyRule

#: XGBoost's name of the linear booster (the other is gbtree)
LINEAR = "gblinear"
#: The booster attribute that records the linear model's standardisation (`_fit_linear`)
SCALE_ATTRIBUTE = "klinecast_feature_scale"

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
    #: the features each fit keeps (chosen on its training rows); 0: every feature
    n_features: int = 0
    #: trees per boosting round, each on its own subsample, averaged (num_parallel_tree)
    parallel_trees: int = 1
    #: equal, or uniqueness: each row by its label's average uniqueness
    sample_weights: str = "equal"
    #: gbtree or gblinear
    booster: str = "gbtree"
    #: the linear booster's L1 and L2 penalties per row of standardised features (XGBoost's
    #: reg_alpha and reg_lambda; the trees keep XGBoost's defaults)
    reg_alpha: float = 0.0
    reg_lambda: float = 0.0

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
    """The xgb.train parameters for hp. `hist` is what makes walk-forward tuning affordable;
    the linear booster's cyclic coordinate descent is deterministic (shotgun is not)."""
    common = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "eta": hp.learning_rate,
        "seed": seed,
        "nthread": nthread,
    }
    if hp.booster == LINEAR:
        return common | {
            "booster": LINEAR, "updater": "coord_descent", "feature_selector": "cyclic",
            "alpha": hp.reg_alpha, "lambda": hp.reg_lambda,
        }  # fmt: skip
    return common | {
        "tree_method": "hist",
        "max_bin": MAX_BIN,
        "max_depth": hp.max_depth,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "gamma": hp.gamma,
    } | ({"num_parallel_tree": hp.parallel_trees} if hp.parallel_trees > 1 else {})


#: The small booster that ranks the features of a training window (`select_features`).
RANKING_ROUNDS, RANKING_DEPTH = 50, 3


def select_features(
    features: np.ndarray, labels: np.ndarray, k: int, *, seed: int = 0, nthread: int = 0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Which k columns a small booster fitted on these rows gains most from (total gain; ties
    and unused features by column order): a boolean mask. Only the rows given are read, so
    inside a walk-forward fold the choice sees nothing of its test window."""
    ranking = xgb.train(
        {
            "objective": "binary:logistic", "tree_method": "hist", "max_bin": MAX_BIN,
            "max_depth": RANKING_DEPTH, "eta": 0.1, "subsample": 0.8, "seed": seed,
            "nthread": nthread,
        },
        xgb.QuantileDMatrix(features, label=labels, weight=weights, nthread=nthread, max_bin=MAX_BIN),
        num_boost_round=RANKING_ROUNDS,
    )  # fmt: skip
    gain = ranking.get_score(importance_type="total_gain")
    scores = np.array([gain.get(f"f{i}", 0.0) for i in range(features.shape[1])])
    keep = np.zeros(features.shape[1], dtype=bool)
    keep[np.argsort(-scores, kind="stable")[:k]] = True
    return keep


def training_weights(hp: HyperParams, index, *, horizon_hours: int) -> np.ndarray | None:
    """The rows' sample weights for hp (None: equal), from their UTC hours and the label's
    horizon: a row's label's average uniqueness among the labels of consecutive hours,
    scaled to a mean of 1."""
    if hp.sample_weights == "equal":
        return None
    if not len(index):
        return np.ones(0, dtype=np.float32)
    from klinecast.research.stats import label_uniqueness

    hours = (np.asarray(index.asi8) - index.asi8[0]) // 3_600_000_000_000
    grid = np.zeros(int(hours[-1]) + 1, dtype=bool)
    grid[hours] = True
    uniqueness = label_uniqueness(grid, horizon_hours)[hours]
    return (uniqueness / uniqueness.mean()).astype(np.float32)


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    hp: HyperParams,
    *,
    seed: int = 0,
    nthread: int = 0,
    feature_names: list[str] | None = None,
    weights: np.ndarray | None = None,
) -> xgb.Booster:
    """Trains a booster on one training window (its rows only: the feature choice too).

    Args:
        weights: each row's sample weight (`training_weights`), or None for equal weights.
    """
    if 0 < hp.n_features < features.shape[1]:
        keep = select_features(
            features, labels, hp.n_features, seed=seed, nthread=nthread, weights=weights
        )
        features = np.where(keep, features, np.nan).astype(features.dtype)
    if hp.booster == LINEAR:
        return _fit_linear(features, labels, hp, seed=seed, nthread=nthread,
                           feature_names=feature_names, weights=weights)  # fmt: skip
    matrix = xgb.QuantileDMatrix(
        features, label=labels, weight=weights, feature_names=feature_names, nthread=nthread,
        max_bin=MAX_BIN,
    )  # fmt: skip
    return xgb.train(
        booster_params(hp, seed=seed, nthread=nthread), matrix, num_boost_round=hp.n_estimators
    )


def _fit_linear(
    features: np.ndarray, labels: np.ndarray, hp: HyperParams, *, seed: int, nthread: int,
    feature_names: list[str] | None, weights: np.ndarray | None,
) -> xgb.Booster:  # fmt: skip
    """The linear booster, fitted on the features standardised by their training rows' mean
    and standard deviation (so one L1 and L2 penalty means the same for every feature), its
    weights then mapped back onto the raw features: w / s, and the bias less the sum of
    w * m / s. A column with no spread (or none known: a feature the fit does not keep) is
    left as it is and missing values stay missing, so it keeps a weight of 0."""
    with warnings.catch_warnings():  # an all-missing column: "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(features, axis=0, dtype=np.float64))
        spread = np.nanstd(features, axis=0, dtype=np.float64)
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    standard = ((features - mean) / spread).astype(np.float32)
    matrix = xgb.DMatrix(
        standard, label=labels, weight=weights, feature_names=feature_names, nthread=nthread
    )
    fitted = xgb.train(
        booster_params(hp, seed=seed, nthread=nthread), matrix, num_boost_round=hp.n_estimators
    )
    model = json.loads(fitted.save_raw("json"))
    linear = model["learner"]["gradient_booster"]["model"]
    *weight, bias = np.asarray(linear["weights"], dtype=np.float64)
    weight = np.asarray(weight) / spread
    linear["weights"] = [*map(float, weight), float(bias - weight @ mean)]
    booster = xgb.Booster(model_file=bytearray(json.dumps(model).encode()))
    booster.set_param({"nthread": nthread})
    booster.set_attr(**{SCALE_ATTRIBUTE: json.dumps([round(float(s), 12) for s in spread])})
    return booster


def is_linear(booster: xgb.Booster) -> bool:
    return json.loads(booster.save_config())["learner"]["gradient_booster"]["name"] == LINEAR


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
    """What the model holds: trees with a handful of splits, or a linear model with a weight
    on one or two features, have learned next to nothing."""

    trees: int
    trees_that_split: int
    splits: int
    #: the features a split reads, or that carry a weight other than 0
    features_used: tuple[str, ...]
    booster: str = "gbtree"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"features_used": list(self.features_used)}


def complexity(booster: xgb.Booster) -> Complexity:
    """Counts the trees, the trees with at least one split, the splits and the features used
    (a linear model: no trees, and the features whose weight is not 0)."""
    if is_linear(booster):
        weights = booster.get_score(importance_type="weight")
        used = tuple(sorted(name for name, w in weights.items() if w != 0))
        return Complexity(trees=0, trees_that_split=0, splits=0, features_used=used, booster=LINEAR)
    nodes = booster.trees_to_dataframe()
    splits = nodes[nodes["Feature"] != "Leaf"]
    return Complexity(
        trees=int(nodes["Tree"].nunique()),
        trees_that_split=int(splits["Tree"].nunique()),
        splits=len(splits),
        features_used=tuple(sorted(splits["Feature"].unique())),
    )


def feature_importance(booster: xgb.Booster, names: list[str]) -> dict[str, float]:
    """Each feature's share of the trees' total gain (0 for a feature no tree splits on); of a
    linear model, its share of the weights' sizes on standardised features."""
    if is_linear(booster):
        weights = booster.get_score(importance_type="weight")
        scale = json.loads(booster.attr(SCALE_ATTRIBUTE) or "[]") or [1.0] * len(names)
        sizes = {n: abs(weights.get(n, 0.0)) * s for n, s in zip(names, scale, strict=False)}
        total = sum(sizes.values()) or 1.0
        return {name: sizes.get(name, 0.0) / total for name in names}
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return {name: gain.get(name, 0.0) / total for name in names}
