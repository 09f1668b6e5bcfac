"""A client of the InferenceService over KServe REST (V1 or V2): the request bodies for raw
candles or a symbol, and the forecast read back. The trader and the benchmarks use it.

Candles go in the compact form (serving.payload): V1 JSON, or V2 binary tensors (the
protocol's binary tensor data extension), which the servers read without parsing numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import requests

from klinecast.data.candles import CANDLE_COLUMNS
from klinecast.errors import KlinecastError
from klinecast.research.strategy import StrategyRule

#: What a request carries per candle: every column a model's features may read.
COLUMNS = ("open", "high", "low", "close", "volume", "taker_buy_volume")
#: V2's binary tensor data extension: the length of the JSON object before the tensors' bytes.
JSON_LENGTH = "Inference-Header-Content-Length"


class InferenceError(KlinecastError):
    """The InferenceService is down or answered badly: no trade this hour."""


@dataclass(frozen=True)
class Prediction:
    prob_up: float
    model_version: str
    feature_time: str
    rule: StrategyRule  # the rule the model was tuned with; the trader applies it


def predict(
    url: str,
    model_name: str,
    candles: pd.DataFrame,
    *,
    protocol: str = "v1",
    symbol: str | None = None,
    candles_of: str | None = None,
    timeout: float = 10,
) -> Prediction:
    """Asks the transformer by symbol (features from its online store), or sends the candles,
    and checks the answer against the newest of the candles.

    Args:
        candles_of: the symbol the candles are of, named in the request so that a service with
            a model per symbol answers with that symbol's model (V1: beside "instances"; V2: in
            the request's parameters).

    Raises:
        InferenceError: unreachable, a non-200 status, or an answer that is not a probability
            for the newest candle.
    """
    base = url.rstrip("/")
    named = {"symbol": candles_of} if candles_of else {}
    if protocol == "v1":
        endpoint = f"{base}/v1/models/{model_name}:predict"
        body = v1_symbol_request(symbol) if symbol else named | v1_compact_request(candles)
        data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    else:
        endpoint = f"{base}/v2/models/{model_name}/infer"
        if symbol:
            data = json.dumps(v2_symbol_request(symbol)).encode()
            headers = {"Content-Type": "application/json"}
        else:
            data, headers = v2_binary_request(candles, parameters=named or None)
    try:
        answer = requests.post(endpoint, data=data, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise InferenceError(f"{endpoint} unreachable: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise InferenceError(f"{endpoint} answered HTTP {answer.status_code}: {answer.text[:200]}")
    try:
        prediction = _parse(answer.json(), protocol)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InferenceError(f"{endpoint} answered malformed JSON ({exc!r})") from None
    if not 0.0 <= prediction.prob_up <= 1.0:
        raise InferenceError(f"{endpoint} answered prob_up {prediction.prob_up}, not in [0, 1]")
    # feature_time is when the newest candle closed: its open time plus one interval
    expected = (candles.index[-1] + (candles.index[-1] - candles.index[-2])).isoformat()
    if prediction.feature_time != expected:
        raise InferenceError(
            f"{endpoint} predicted from data closed at {prediction.feature_time}, not at {expected}"
        )
    return prediction


def _parse(document: dict, protocol: str) -> Prediction:
    if protocol == "v1":
        answer = document["predictions"][0]
        rule = answer["strategy"]
    else:
        answer = {o["name"]: o["data"][0] for o in document["outputs"]}
        rule = json.loads(answer["strategy"])
    return Prediction(
        float(answer["prob_up"]),
        str(answer["model_version"]),
        str(answer["feature_time"]),
        StrategyRule.from_dict(rule),
    )


def v1_request(candles: pd.DataFrame) -> dict:
    """The V1 body for the transformer: one object per candle with named fields."""
    stamps = (candles.index.asi8 // 1_000_000).tolist()
    columns = {c: candles[c].astype(float).tolist() for c in COLUMNS}
    return {
        "instances": [
            {"open_time": t, **{c: columns[c][i] for c in COLUMNS}} for i, t in enumerate(stamps)
        ]
    }


def v2_request(candles: pd.DataFrame) -> dict:
    """The V2 body for the transformer: one 1-D tensor per column."""
    n = len(candles)
    inputs = [
        {
            "name": "open_time",
            "shape": [n],
            "datatype": "INT64",
            "data": (candles.index.asi8 // 1_000_000).tolist(),
        }
    ]
    inputs += [
        {"name": c, "shape": [n], "datatype": "FP64", "data": candles[c].astype(float).tolist()}
        for c in COLUMNS
    ]
    return {"inputs": inputs}


def candle_rows(candles: pd.DataFrame) -> np.ndarray:
    """The candle columns as one [n, 9] FP64 matrix, in the contract's order (a column the
    frame lacks is 0: the optional ones no model's features read)."""
    return np.column_stack(
        [
            candles[c].to_numpy(dtype=np.float64) if c in candles else np.zeros(len(candles))
            for c in CANDLE_COLUMNS
        ]
    )


def open_times(candles: pd.DataFrame) -> np.ndarray:
    """The candles' open times as epoch milliseconds (INT64)."""
    return (candles.index.asi8 // 1_000_000).astype(np.int64)


def v1_compact_request(candles: pd.DataFrame) -> dict:
    """The V1 body in the compact form: the open times, and one row of the nine candle
    columns per candle."""
    return {"open_time": open_times(candles).tolist(), "instances": candle_rows(candles).tolist()}


def v2_compact_request(candles: pd.DataFrame) -> dict:
    """The V2 JSON body in the compact form: `open_time` INT64 [n] and `candles` FP64 [n, 9]."""
    rows = candle_rows(candles)
    return {
        "inputs": [
            {"name": "open_time", "shape": [len(rows)], "datatype": "INT64",
             "data": open_times(candles).tolist()},
            {"name": "candles", "shape": list(rows.shape), "datatype": "FP64",
             "data": rows.ravel().tolist()},
        ]
    }  # fmt: skip


def v2_binary_request(
    candles: pd.DataFrame, *, parameters: dict | None = None
) -> tuple[bytes, dict[str, str]]:
    """The V2 body in the compact form as binary tensors, and its headers: the JSON object
    (tensors described, `binary_data_size` each), then the tensors' little-endian bytes."""
    tensors = {"open_time": open_times(candles).astype("<i8"), "candles": candle_rows(candles)}
    header = {
        "inputs": [
            {"name": name, "shape": list(values.shape),
             "datatype": "INT64" if name == "open_time" else "FP64",
             "parameters": {"binary_data_size": values.nbytes}}
            for name, values in tensors.items()
        ]
    }  # fmt: skip
    if parameters:
        header["parameters"] = parameters
    prefix = json.dumps(header).encode()
    body = b"".join([prefix, *(values.astype(values.dtype.newbyteorder("<")).tobytes()
                               for values in tensors.values())])  # fmt: skip
    return body, {"Content-Type": "application/octet-stream", JSON_LENGTH: str(len(prefix))}


def v1_symbol_request(symbol: str) -> dict:
    """The V1 body that asks for a symbol's forecast from the online store."""
    return {"instances": [{"symbol": symbol}]}


def v2_symbol_request(symbol: str) -> dict:
    """The V2 body that asks for a symbol's forecast: one BYTES input `symbol`."""
    return {"inputs": [{"name": "symbol", "shape": [1], "datatype": "BYTES", "data": [symbol]}]}
