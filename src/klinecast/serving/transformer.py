"""The transformer: recent raw candles -> features (the training function) -> predictor."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import tempfile
import uuid
from pathlib import Path

import kserve
import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from klinecast import registry, strategy
from klinecast.config import INTERVALS
from klinecast.features import compute_features, required_columns
from klinecast.serving import payload as parse

log = logging.getLogger(__name__)
JSON_TYPES = ("application/json", "application/cloudevents+json")

# What preprocess learned about the request, for postprocess of the same request.
_request = contextvars.ContextVar("klinecast_request")


class CandleTransformer(kserve.Model):
    """Computes the model's features from candles with klinecast.features.compute_features.

    It reads the artifact's metadata.json (feature names and order, min_history, interval) from
    the same storage URI as the predictor, so both always describe one model version.
    """

    def __init__(self, name: str, storage_uri: str):
        super().__init__(name)
        self.storage_uri = storage_uri
        self.feature_names: list[str] = []
        self.min_history = 0
        self.interval = dt.timedelta(hours=1)
        self.rule = strategy.SEED_RULE
        self.horizon_hours = 1
        self.required: tuple[str, ...] = ()
        self.model_version = ""
        self.ready = False

    def load(self) -> bool:
        try:
            local = registry.fetch_artifact(
                self.storage_uri, Path(tempfile.mkdtemp(prefix="meta-"))
            )
            metadata = registry.read_artifact_metadata(local)
            self.feature_names = list(metadata["feature_names"])
            self.min_history = int(metadata["min_history"])
            self.interval = INTERVALS[metadata["interval"]]
            self.rule = strategy.StrategyRule(**metadata["strategy"])
            self.horizon_hours = int(metadata["horizon_hours"])
            self.required = required_columns(self.feature_names)
        except KeyError as exc:
            log.error(
                "transformer %s NOT ready: metadata from %s lacks %s (an artifact from before "
                "the trading rule shipped with the model: retrain it)",
                self.name, self.storage_uri, exc,
            )  # fmt: skip
            self.ready = False
            return False
        except (registry.RegistryError, OSError, TypeError, ValueError) as exc:
            log.error(
                "transformer %s NOT ready: metadata from %s: %s", self.name, self.storage_uri, exc
            )
            self.ready = False
            return False
        self.model_version = _version_of(self.storage_uri, metadata)
        self.ready = True
        log.info(
            "transformer %s ready: %d features, min_history %d, version %s",
            self.name,
            len(self.feature_names),
            self.min_history,
            self.model_version,
        )
        return True

    def preprocess(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            candles = parse.candles_from_v2(payload.inputs, required=self.required)
        else:
            _check_content_type(payload, headers)
            candles = parse.candles_from_v1(payload, required=self.required)
        parse.check_window(candles, interval=self.interval, min_history=self.min_history)
        features = compute_features(
            candles, indicators=self.feature_names, interval=self.interval
        ).frame
        if features.empty or features.index[-1] != candles.index[-1]:
            raise InvalidInput("the window yields no feature row for its newest candle")
        row = features[self.feature_names].to_numpy(dtype=np.float64)[-1:]
        feature_time = (features.index[-1] + self.interval).isoformat()
        _request.set({"v2": isinstance(payload, InferRequest), "feature_time": feature_time})
        if self.predictor_config.predictor_protocol == "v2":
            tensor = InferInput("features", list(row.shape), "FP64", row.tolist())
            return InferRequest(self.name, [tensor])
        return {"instances": row.tolist()}

    def postprocess(self, result, headers=None, response_headers=None):
        request = _request.get()
        if isinstance(result, InferResponse):
            prob = float(np.asarray(result.outputs[0].data, dtype=np.float64).ravel()[0])
        else:
            prob = float(result["predictions"][0])
        # what the model's rule does from a flat book; a holder applies the same rule,
        # strategy.next_position, with its own position (the trader, with its ledger's)
        direction = DIRECTIONS[strategy.next_position(prob, self.rule)]
        rule = self.rule.as_dict() | {"horizon_hours": self.horizon_hours}
        answer = {
            "prob_up": prob,
            "direction": direction,
            "model_version": self.model_version,
            "feature_time": request["feature_time"],
            "strategy": rule,
        }
        if request["v2"]:
            outputs = [
                InferOutput("prob_up", [1], "FP64", [prob]),
                InferOutput("direction", [1], "BYTES", [direction]),
                InferOutput("model_version", [1], "BYTES", [self.model_version]),
                InferOutput("feature_time", [1], "BYTES", [request["feature_time"]]),
                InferOutput("strategy", [1], "BYTES", [json.dumps(rule)]),
            ]
            return InferResponse(
                response_id=str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs
            )
        return {"predictions": [answer]}


DIRECTIONS = {1: "up", -1: "down", 0: "flat"}


def _check_content_type(payload, headers) -> None:
    content_type = (headers or {}).get("content-type", "application/json").split(";")[0].strip()
    if isinstance(payload, bytes | str) or content_type not in JSON_TYPES:
        raise InvalidInput(f"Content-Type {content_type!r} is not supported; send application/json")


def _version_of(storage_uri: str, metadata: dict) -> str:
    last = storage_uri.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("v") and "-" in last else str(metadata.get("created_at", last))


def offline_probabilities(candles: pd.DataFrame, artifact_dir: Path) -> pd.Series:
    """The batch path the serving answers must equal: features on full history, then predict."""
    import xgboost as xgb

    metadata = registry.read_artifact_metadata(artifact_dir)
    names = metadata["feature_names"]
    frame = compute_features(
        candles, indicators=names, interval=INTERVALS[metadata["interval"]]
    ).frame
    booster = xgb.Booster()
    booster.load_model(str(Path(artifact_dir) / registry.MODEL_FILE))
    proba = booster.predict(
        xgb.DMatrix(frame[names].to_numpy(dtype=np.float64)), validate_features=False
    )
    return pd.Series(proba, index=frame.index, name="prob_up")
