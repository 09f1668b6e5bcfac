"""The predictor: a kserve.Model that serves a published XGBoost artifact (V1 and V2 REST)."""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

import kserve
import numpy as np
import xgboost as xgb
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from klinecast.release import registry
from klinecast.release.metadata import ArtifactMetadata
from klinecast.serving.payload import requested_outputs
from klinecast.serving.v2_request import answered_outputs

log = logging.getLogger(__name__)
#: The V2 tensors: one input of feature rows (any name is accepted), one output.
INPUT, OUTPUT = "features", "predict"


class XGBoostPredictor(kserve.Model):
    """Loads model.json from a storage URI; predicts P(next candle closes higher).

    Input: V1 {"instances": [[f1, ..., fn], ...]} or one V2 FP32/FP64 tensor of shape [rows, n].
    Output: V1 {"predictions": [p, ...]} or a V2 tensor "predict", with the model's version.
    """

    def __init__(self, name: str, storage_uri: str):
        super().__init__(name)
        self.storage_uri = storage_uri
        self.booster: xgb.Booster | None = None
        self.metadata: ArtifactMetadata | None = None
        self.model_version = ""
        self.ready = False

    def load(self) -> bool:
        """Sets ready; a missing or unreadable model leaves it False with one clear log line.

        A URI of the version PRODUCTION loads the version the registry's pointer names now:
        the process fetches it itself (boto3), as KServe's storage initializer fetches only
        one STORAGE_URI and a predictor of several symbols serves several models.
        """
        try:
            uri = registry.resolve_production(self.storage_uri)
            local = registry.fetch_artifact(uri, Path(tempfile.mkdtemp(prefix="model-")))
            booster = xgb.Booster()
            booster.load_model(str(local / registry.MODEL_FILE))
            metadata = registry.read_artifact_metadata(local)
        except (registry.RegistryError, xgb.core.XGBoostError, OSError, ValueError) as exc:
            log.error("model %s NOT loaded from %s: %s", self.name, self.storage_uri, exc)
            self.ready = False
            return False
        self.booster, self.metadata = booster, metadata
        self.model_version = registry.version_of(uri, metadata)
        self.ready = True
        log.info("model %s loaded from %s (%d features)", self.name, uri, booster.num_features())
        return True

    # -- the Open Inference Protocol's model metadata
    def get_input_types(self) -> list[dict]:
        names = len(self.metadata.feature_names) if self.metadata else -1
        return [{"name": INPUT, "datatype": "FP64", "shape": [-1, names]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}]

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            requested_outputs(payload, known=(OUTPUT,))
        features = _features(payload, expected=self.booster.num_features())
        proba = self.booster.predict(xgb.DMatrix(features), validate_features=False)
        if isinstance(payload, InferRequest):
            output = InferOutput(OUTPUT, [len(proba)], "FP64", proba.astype(np.float64).tolist())
            return InferResponse(
                payload.id or str(uuid.uuid4()), self.name, [output],
                model_version=self.model_version,
                requested_outputs=answered_outputs(payload, [OUTPUT]),
            )  # fmt: skip
        return {"predictions": proba.astype(np.float64).tolist()}


def _features(payload, *, expected: int) -> np.ndarray:
    try:
        if isinstance(payload, InferRequest):
            if len(payload.inputs) != 1:
                raise InvalidInput(f"expected one input tensor, got {len(payload.inputs)}")
            rows = payload.inputs[0].as_numpy()
        elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
            rows = np.asarray(payload["instances"], dtype=np.float64)
        else:
            raise InvalidInput('expected {"instances": [[feature, ...], ...]} or one V2 tensor')
        rows = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"features must be a numeric matrix: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != expected or rows.shape[0] == 0:
        raise InvalidInput(
            f"expected a [rows, {expected}] feature matrix, got shape {list(rows.shape)}"
        )
    if not np.isfinite(rows).all():
        raise InvalidInput("features hold NaN or inf")
    return rows
