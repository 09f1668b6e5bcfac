"""metadata.json of a model artifact: everything needed to serve and to audit the model.

`ArtifactMetadata` is what train writes and what publish, serving, the report and the trader
read back, typed; its JSON keys are the contract of metadata.json (DESIGN.md) and stay as
they were, so artifacts written before it still load.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import xgboost as xgb

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research import training
from klinecast.research.model import Candidate, Complexity, HyperParams, complexity
from klinecast.research.scorecard import Scorecard, ScorecardError
from klinecast.research.strategy import StrategyRule
from klinecast.research.training import TrainedModel

LIBRARIES = ("klinecast", "xgboost-cpu", "ta-lib", "numpy", "pandas", "optuna", "scikit-learn")


class MetadataError(KlinecastError):
    """metadata.json is missing, unreadable or lacks what the model needs."""


@dataclass(frozen=True)
class ArtifactMetadata:
    model_name: str
    created_at: str
    symbol: str
    interval: str
    #: the model's inputs, in order
    feature_names: tuple[str, ...]
    #: candles a request must bring so that its features equal training's
    min_history: int
    #: hyperparameters, label horizon and the trading rule the model was tuned with
    candidate: Candidate
    complexity: Complexity
    train_start: str
    train_end: str
    train_rows: int
    fee: float
    step_days: int
    #: the DVC hash of the raw data and the sha256 of the feature file
    data_version: dict[str, str]
    #: evaluate's scorecard (metrics.json), as the gate and the report read it; None for a
    #: model made without an evaluation (tests, experiments)
    metrics: Scorecard | None
    libraries: dict[str, str | None]
    #: the symbols whose rows trained a pooled model (empty: the symbol's own model)
    pooled: tuple[str, ...] = ()

    @property
    def rule(self) -> StrategyRule:
        return self.candidate.rule

    @property
    def horizon_hours(self) -> int:
        return self.candidate.horizon_hours

    def as_dict(self) -> dict:
        hp = self.candidate.hp
        return {
            "model_name": self.model_name,
            "created_at": self.created_at,
            "symbol": self.symbol,
            "interval": self.interval,
            "feature_names": list(self.feature_names),
            "min_history": self.min_history,
            "hyperparams": hp.as_dict(),
            "look_back_days": hp.look_back_days,
            "horizon_hours": self.candidate.horizon_hours,
            "strategy": self.rule.as_dict(),
            "complexity": self.complexity.as_dict(),
            "train_start": self.train_start,
            "train_end": self.train_end,
            "train_rows": self.train_rows,
            "backtest": {"fee": self.fee, "step_days": self.step_days},
            "data_version": self.data_version,
            "metrics": self.metrics.as_dict() if self.metrics is not None else {},
            "libraries": self.libraries,
        } | ({"pooled": list(self.pooled)} if self.pooled else {})

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "metadata.json") -> ArtifactMetadata:
        """Raises MetadataError naming the first key that is missing or malformed."""
        try:
            return cls(
                model_name=str(values["model_name"]),
                created_at=str(values["created_at"]),
                symbol=str(values["symbol"]),
                interval=str(values["interval"]),
                feature_names=tuple(values["feature_names"]),
                min_history=int(values["min_history"]),
                candidate=Candidate(
                    HyperParams.from_dict(values["hyperparams"]),
                    StrategyRule(**values["strategy"]),
                    int(values["horizon_hours"]),
                ),
                complexity=_complexity(values["complexity"]),
                train_start=str(values["train_start"]),
                train_end=str(values["train_end"]),
                train_rows=int(values["train_rows"]),
                fee=float(values["backtest"]["fee"]),
                step_days=int(values["backtest"]["step_days"]),
                data_version=dict(values["data_version"]),
                metrics=Scorecard.from_dict(values["metrics"], source=f"{source}: metrics")
                if values["metrics"]
                else None,
                libraries=dict(values["libraries"]),
                pooled=tuple(values.get("pooled", ())),
            )
        except KeyError as exc:
            raise MetadataError(
                f"{source} lacks {exc} (an artifact from an older klinecast: retrain it)"
            ) from None
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"{source} is malformed: {exc}") from None
        except ScorecardError as exc:
            raise MetadataError(str(exc)) from None

    @classmethod
    def read(cls, path: Path) -> ArtifactMetadata:
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise MetadataError(f"{path} is missing") from None
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise MetadataError(f"{path} is not a JSON object")
        return cls.from_dict(values, source=str(path))

    def write(self, path: Path) -> None:
        atomic.write_json(path, self.as_dict())


def _complexity(values: dict) -> Complexity:
    return Complexity(
        trees=int(values["trees"]),
        trees_that_split=int(values["trees_that_split"]),
        splits=int(values["splits"]),
        features_used=tuple(values["features_used"]),
        booster=str(values.get("booster", "gbtree")),
    )


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
    metrics: Scorecard | None,
    data_version: dict[str, str],
    pooled: tuple[str, ...] = (),
) -> ArtifactMetadata:
    """The metadata of a model that train just fitted (on the pooled symbols' rows, if any)."""
    return ArtifactMetadata(
        model_name=Book(params).model_name(params.data.symbol),
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        symbol=params.data.symbol,
        interval=params.data.interval,
        feature_names=tuple(params.features.names),
        min_history=params.features.min_history,
        candidate=candidate,
        complexity=complexity(trained.booster),
        train_start=trained.train_start.isoformat(),
        train_end=trained.train_end.isoformat(),
        train_rows=trained.rows,
        fee=params.backtest.fee,
        step_days=params.backtest.step_days,
        data_version=data_version,
        metrics=metrics,
        libraries=library_versions(),
        pooled=pooled,
    )


def final_model(
    frame: pd.DataFrame,
    params: Params,
    candidate: Candidate,
    *,
    metrics: Scorecard | None,
    data_version: dict[str, str],
    pool: dict[str, pd.DataFrame] | None = None,
) -> tuple[xgb.Booster, ArtifactMetadata]:
    """The model to publish and its metadata: train_final, described for serving and audit.

    Args:
        pool: symbol -> features: the pooled model of these symbols (`training.train_final`).
    """
    trained = training.train_final(frame, params, candidate, pool=pool)
    metadata = artifact_metadata(
        trained, params=params, candidate=candidate, metrics=metrics, data_version=data_version,
        pooled=tuple(sorted(pool or ())),
    )  # fmt: skip
    return trained.booster, metadata
