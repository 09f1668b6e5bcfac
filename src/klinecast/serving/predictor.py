"""The predictor: a kserve.Model that serves a published XGBoost artifact (V1 and V2 REST).

A storage URI of the version PRODUCTION (`<registry>/<model>/versions/PRODUCTION`) follows
the registry: the server calls refresh() every poll period, and a newly promoted version is
loaded and warmed beside the one served, then swapped in whole; the version before stays
loaded, so a request that names it (the transformer names the version whose metadata it
read) is still answered during the swap.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import kserve
import numpy as np
import xgboost as xgb
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from klinecast.release import registry
from klinecast.release.metadata import ArtifactMetadata
from klinecast.serving.errors import Absence, VersionNotServed
from klinecast.serving.payload import requested_outputs
from klinecast.serving.protocol import VERSION_HEADER
from klinecast.serving.v2_request import answered_outputs

log = logging.getLogger(__name__)
#: The V2 tensors: one input of feature rows (any name is accepted), one output.
INPUT, OUTPUT = "features", "predict"


@dataclass(frozen=True)
class Loaded:
    """One loaded version: what predict needs, swapped in whole."""

    uri: str
    version: str
    booster: xgb.Booster
    metadata: ArtifactMetadata


class XGBoostPredictor(kserve.Model):
    """Loads model.json from a storage URI; predicts P(next candle closes higher).

    Input: V1 {"instances": [[f1, ..., fn], ...]} or one V2 FP32/FP64 tensor of shape [rows, n].
    Output: V1 {"predictions": [p, ...]} or a V2 tensor "predict", with the model's version.
    """

    def __init__(self, name: str, storage_uri: str, *, poll_s: float = 30.0):
        """
        Args:
            poll_s: how often the server calls refresh() (a model not loaded yet answers 503
                with this Retry-After).
        """
        super().__init__(name)
        self.storage_uri = storage_uri
        self.poll_s = poll_s
        #: (the version served, the one before it): one assignment swaps both
        self.held: tuple[Loaded | None, Loaded | None] = (None, None)
        #: why no version is loaded (None once one is)
        self.absent: Absence | None = None
        self._failure: Absence | None = None  # the last refresh's, for one log line per reason
        self.ready = False

    @property
    def current(self) -> Loaded | None:
        return self.held[0]

    @property
    def model_version(self) -> str:
        return self.current.version if self.current else ""

    @property
    def metadata(self) -> ArtifactMetadata | None:
        return self.current.metadata if self.current else None

    def served_versions(self) -> list[str]:
        """The versions a request may name: the one served, and the one before it."""
        return [v.version for v in self.held if v is not None]

    def load(self) -> bool:
        """Sets ready; a missing or unreadable model leaves it False with one clear log line
        (the server calls refresh() again every poll period until it loads)."""
        self.refresh()
        return self.ready

    def refresh(self) -> float | None:
        """Loads the version the storage URI names now, when it is not the one served.

        A URI of the version PRODUCTION is the version the registry's pointer names now: the
        process fetches it itself (boto3), as KServe's storage initializer fetches only one
        STORAGE_URI and a predictor of several symbols serves several models. A failure keeps
        the version served, if any.
        """
        try:
            uri = registry.resolve_pointer(self.storage_uri)
            if self.current is not None and uri == self.current.uri:
                self._failure = None
                return None
            local = registry.fetch_artifact(uri, Path(tempfile.mkdtemp(prefix="model-")))
            booster = xgb.Booster()
            booster.load_model(str(local / registry.MODEL_FILE))
            # a request is a row or a few: threads only add OpenMP's hand-offs, which on a busy
            # node wait for a descheduled thread (one row's mean 15.5 ms with the default
            # threads, 6.6 ms with one, p50 0.14 ms both, at a load of 6.5 on 2 cores)
            booster.set_param({"nthread": 1})
            metadata = registry.read_artifact_metadata(local)
        except (registry.RegistryError, xgb.core.XGBoostError, OSError, ValueError) as exc:
            self._failed(exc)
            return None
        loaded = Loaded(uri, registry.version_of(uri, metadata), booster, metadata)
        # warmed before it serves: the first request does not pay for the booster's set-up
        booster.predict(xgb.DMatrix(np.zeros((1, booster.num_features()))), validate_features=False)
        before = self.current
        self.held = (loaded, before)
        self.absent, self._failure, self.ready = None, None, True
        if before is None:
            log.info("model %s loaded from %s (%d features)", self.name, uri, booster.num_features())
        else:
            log.info(
                "model %s: version %s loaded from %s, serving it from now on (was %s)",
                self.name, loaded.version, uri, before.version,
            )  # fmt: skip
        return None

    def _failed(self, exc: Exception) -> None:
        """Logged once per reason; a version already served keeps being served."""
        absence = Absence.of(exc)
        first, self._failure = absence != self._failure, absence
        if self.current is None:
            self.absent = absence
            if first:
                log.error("model %s NOT loaded from %s: %s", self.name, self.storage_uri, exc)
        elif first:
            log.warning(
                "model %s: the production version could not be read from %s: %s; serving "
                "version %s meanwhile", self.name, self.storage_uri, exc, self.model_version,
            )  # fmt: skip

    # -- the Open Inference Protocol's model metadata
    def get_input_types(self) -> list[dict]:
        names = len(self.metadata.feature_names) if self.metadata else -1
        return [{"name": INPUT, "datatype": "FP64", "shape": [-1, names]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}]

    def predict(self, payload, headers=None):
        loaded = self._version(headers)
        if isinstance(payload, InferRequest):
            requested_outputs(payload, known=(OUTPUT,))
        features = _features(payload, expected=loaded.booster.num_features())
        proba = loaded.booster.predict(xgb.DMatrix(features), validate_features=False)
        if isinstance(payload, InferRequest):
            output = InferOutput(OUTPUT, [len(proba)], "FP64", proba.astype(np.float64).tolist())
            return InferResponse(
                payload.id or str(uuid.uuid4()), self.name, [output],
                model_version=loaded.version,
                requested_outputs=answered_outputs(payload, [OUTPUT]),
            )  # fmt: skip
        return {"predictions": proba.astype(np.float64).tolist()}

    def _version(self, headers) -> Loaded:
        """The version a request names (a versioned path, or the transformer's header), else
        the one served."""
        asked = (headers or {}).get(VERSION_HEADER)
        current, previous = self.held  # one read: a swap may come meanwhile
        if asked is None or asked == current.version:
            return current
        if previous is not None and asked == previous.version:
            return previous
        raise VersionNotServed(self.name, asked, [v.version for v in (current, previous) if v])


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
