"""Answer building: the predictor's probability -> the forecast with the model's rule, as V1
{"predictions": [...]} or V2 tensors of one value per symbol asked, in order."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import InferOutput, InferResponse

from klinecast.research import strategy
from klinecast.serving.errors import PredictorAnswerError
from klinecast.serving.models import SymbolModel
from klinecast.serving.requests import Asked

DIRECTIONS = {1: "up", -1: "down", 0: "flat"}
#: The answer's outputs, in order: name -> V2 datatype.
OUTPUTS = {
    "prob_up": "FP64",
    "direction": "BYTES",
    "model_version": "BYTES",
    "feature_time": "BYTES",
    "strategy": "BYTES",
}


def probability(result) -> float:
    """The predictor's probability; a malformed answer is the predictor's fault (502)."""
    try:
        if isinstance(result, InferResponse):
            value = np.asarray(result.outputs[0].data, dtype=np.float64).ravel()[0]
        else:
            value = float(result["predictions"][0])
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PredictorAnswerError(f"no probability in it ({type(exc).__name__})") from None
    if not 0.0 <= float(value) <= 1.0:
        raise PredictorAnswerError(f"prob_up {value} is not in [0, 1]")
    return float(value)


def forecast(prob: float, model: SymbolModel, feature_time: str) -> dict:
    """The answer for one probability with its model's rule: what the rule does from a flat
    book; a holder applies the same rule, strategy.next_position, with its own position (the
    trader, with its ledger's)."""
    decided_at = pd.Timestamp(feature_time)  # the rule's cadence reads its hour
    position = strategy.next_position(prob, model.rule, decision_hour=decided_at.hour)
    return {
        "prob_up": prob,
        "direction": DIRECTIONS[position],
        "model_version": model.model_version,
        "feature_time": feature_time,
        "strategy": model.rule.as_dict() | {"horizon_hours": model.horizon_hours},
    }


def build(asked: Asked, forecasts: list[dict], *, model_name: str, model_version: str):
    """V1 {"predictions": [...]} or V2 tensors of one value per forecast, in order."""
    if not asked.v2:
        return {"predictions": forecasts}
    for one in forecasts:
        one["strategy"] = json.dumps(one["strategy"])
    outputs = [
        InferOutput(o.name, [len(forecasts)], OUTPUTS[o.name], [a[o.name] for a in forecasts])
        for o in asked.outputs
    ]
    return InferResponse(
        response_id=asked.request_id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=outputs,
        model_version=model_version,
        requested_outputs=list(asked.outputs),
    )
