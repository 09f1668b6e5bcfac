"""A client of the InferenceService over KServe REST (V1 or V2): the request bodies for raw
candles or a symbol, and the forecast read back. The trader and the benchmarks use it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import requests

from klinecast.errors import KlinecastError
from klinecast.research.strategy import StrategyRule

#: What a request carries per candle: every column a model's features may read.
COLUMNS = ("open", "high", "low", "close", "volume", "taker_buy_volume")


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
    if protocol == "v1":
        endpoint = f"{base}/v1/models/{model_name}:predict"
        body = v1_symbol_request(symbol) if symbol else v1_request(candles)
        named = {"symbol": candles_of}
    else:
        endpoint = f"{base}/v2/models/{model_name}/infer"
        body = v2_symbol_request(symbol) if symbol else v2_request(candles)
        named = {"parameters": {"symbol": candles_of}}
    if candles_of and not symbol:
        body = named | body
    try:
        answer = requests.post(endpoint, json=body, timeout=timeout)
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


def v1_symbol_request(symbol: str) -> dict:
    """The V1 body that asks for a symbol's forecast from the online store."""
    return {"instances": [{"symbol": symbol}]}


def v2_symbol_request(symbol: str) -> dict:
    """The V2 body that asks for a symbol's forecast: one BYTES input `symbol`."""
    return {"inputs": [{"name": "symbol", "shape": [1], "datatype": "BYTES", "data": [symbol]}]}
