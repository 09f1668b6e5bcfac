"""The transformer's own logic, in process and without servers: requests -> features -> the
predictor's request, and the predictor's answer -> the forecast with the model's rule."""

import asyncio

import numpy as np
import pandas as pd
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

from klinecast.research.features import compute_features
from klinecast.research.strategy import StrategyRule
from klinecast.serving import lookup
from klinecast.serving.answer import probability
from klinecast.serving.client import v1_request, v1_symbol_request
from klinecast.serving.errors import PredictorAnswerError, StoreUnavailable
from klinecast.serving.models import symbol_models
from klinecast.serving.transformer import Batch, ForecastTransformer, predictor_request
from tests.support.model_fixtures import HOUR, tiny_artifact

RULE = StrategyRule("long_short", entry_band=0.02, exit_band=0.01, min_hold_hours=2)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact") / "candidate"
    candles = tiny_artifact(out, rule=RULE)
    model = ForecastTransformer("m", str(out))
    assert model.load() and model.ready
    protocol(model, "v1")
    return model, candles


def run(model: ForecastTransformer, body, answer=None, headers=None):
    """preprocess of body in one event loop, as kserve runs it, then, when the predictor's
    answer is given, what predict makes of it for each row asked and postprocess. Returns
    (what preprocess made, the answer or None)."""

    async def request():
        made = await model.preprocess(body, headers or {"content-type": "application/json"})
        if answer is None:
            return made, None
        for item in made.items:
            if item.prob_up is None:
                item.prob_up = probability(answer)
        return made, model.postprocess(made)

    return asyncio.run(request())


def protocol(model: ForecastTransformer, version: str) -> None:
    """What kserve's ModelServer sets up at start: the protocol the predictor speaks."""
    from kserve.context import set_predictor_config
    from kserve.predictor_config import PredictorConfig

    set_predictor_config(PredictorConfig(predictor_host="", predictor_protocol=version))


def test_candles_become_the_training_functions_newest_row(loaded):
    model, candles = loaded
    protocol(model, "v1")
    window = candles.iloc[-model.min_history :]
    batch, _ = run(model, v1_request(window))
    (item,) = batch.items
    expected = compute_features(candles, indicators=model.feature_names, interval=HOUR).frame
    row = expected.loc[window.index[-1], model.feature_names].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(item.features[0], row, rtol=0, atol=1e-9)
    assert item.feature_time == (window.index[-1] + pd.Timedelta(hours=1)).isoformat()


def test_v2_predictor_gets_one_fp64_tensor(loaded):
    model, candles = loaded
    protocol(model, "v2")
    batch, _ = run(model, v1_request(candles.iloc[-model.min_history :]))
    request = predictor_request(batch.items[0], protocol=model.predictor_config.predictor_protocol)
    assert isinstance(request, InferRequest)
    (tensor,) = request.inputs
    assert tensor.datatype == "FP64" and tensor.shape == [1, len(model.feature_names)]
    protocol(model, "v1")


def test_a_window_shorter_than_min_history_is_refused(loaded):
    model, candles = loaded
    with pytest.raises(InvalidInput, match=str(model.min_history)):
        run(model, v1_request(candles.iloc[-10:]))


def test_a_symbol_without_a_store_is_503_not_a_crash(loaded):
    model, _ = loaded
    with pytest.raises(StoreUnavailable, match="no online store is configured"):
        run(model, v1_symbol_request("BTCUSDT"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [{"symbol": "btc"}]}, "upper-case pair"),
        ({"instances": [{"symbol": "BTCUSDT"}, {"open": 1}]}, "a symbol request is"),
        ({"instances": [{"symbol": "BTCUSDT"}, {"symbol": "eth"}]}, "got 'eth'"),
        ({"instances": [{"symbol": "BTCUSDT"}] * 21}, "21 symbols in one request; at most 20"),
        ({"instances": [{"symbol": "BTCUSDT", "open": 1}]}, "a symbol request is"),
    ],
)
def test_malformed_symbol_requests_are_400(loaded, body, message):
    model, _ = loaded
    with pytest.raises(InvalidInput, match=message):
        run(model, body)


@pytest.mark.parametrize(("prob", "direction"), [(0.53, "up"), (0.5, "flat"), (0.47, "down")])
def test_the_answer_applies_the_models_rule_from_a_flat_book(loaded, prob, direction):
    model, candles = loaded
    model.cache.clear()  # the same window each time: not its answer kept from the last
    _, result = run(model, v1_request(candles.iloc[-model.min_history :]), {"predictions": [prob]})
    (answer,) = result["predictions"]
    assert answer["prob_up"] == prob and answer["direction"] == direction
    assert answer["strategy"] == RULE.as_dict() | {"horizon_hours": 1}


def test_the_v2_answer_holds_only_the_requested_outputs(loaded):
    model, candles = loaded
    window = candles.iloc[-model.min_history :]
    inputs = [
        InferInput("open_time", [len(window)], "INT64", (window.index.asi8 // 10**6).tolist())
    ]
    inputs += [
        InferInput(c, [len(window)], "FP64", window[c].astype(float).tolist())
        for c in model.required
    ]
    request = InferRequest("m", inputs, request_id="r1")
    request.request_outputs = [RequestedOutput("prob_up")]
    _, answer = run(model, request, InferResponse("p", "m", [InferOutput("p", [1], "FP64", [0.6])]))
    assert answer.id == "r1" and [o.name for o in answer.outputs] == ["prob_up"]


@pytest.mark.parametrize(
    "answer", [{"predictions": []}, {"predictions": [1.5]}, {"predictions": ["x"]}, {}]
)
def test_a_malformed_predictor_answer_is_the_predictors_fault(loaded, answer):
    model, candles = loaded
    model.cache.clear()
    with pytest.raises(PredictorAnswerError):
        run(model, v1_request(candles.iloc[-model.min_history :]), answer)


def test_the_same_window_twice_is_answered_from_the_cache(loaded):
    model, candles = loaded
    body = v1_request(candles.iloc[-model.min_history - 1 : -1])
    run(model, body, {"predictions": [0.61]})
    cached, _ = run(model, body)
    assert isinstance(cached, Batch) and cached.items[0].prob_up == 0.61
    assert cached.items[0].features is None  # no row to ask about
    assert asyncio.run(model.predict(cached)) is cached  # and no predictor is asked


def test_a_missing_artifact_leaves_it_not_ready(tmp_path):
    model = ForecastTransformer("m", str(tmp_path / "nothing"))
    assert model.load() is False and model.ready is False


def test_a_storage_uri_names_one_model_or_one_per_symbol():
    (one,) = symbol_models("svc", "s3://bucket/m").items()
    assert one[0] is None and one[1].predictor_name == "svc"
    several = symbol_models("svc", "BTCUSDT=/m/btc,ETHUSDT=s3://b/eth")
    assert {s: (m.storage_uri, m.predictor_name) for s, m in several.items()} == {
        "BTCUSDT": ("/m/btc", "svc-btcusdt"), "ETHUSDT": ("s3://b/eth", "svc-ethusdt"),
    }  # fmt: skip
    # a book of one is named as a book of many is
    assert symbol_models("svc", "BTCUSDT=/m/btc")["BTCUSDT"].predictor_name == "svc-btcusdt"
    with pytest.raises(ValueError, match="a symbol is named twice"):
        symbol_models("svc", "BTCUSDT=/a,BTCUSDT=/b")
    with pytest.raises(ValueError, match="expected SYMBOL=URI"):
        symbol_models("svc", "BTCUSDT=/a,/b")


def test_a_cross_asset_model_loads_and_refuses_candles(tmp_path):
    """Another pair's features cannot come from one pair's candles: such a model is asked by
    symbol; its warm-up stands those columns in as 0."""
    import json

    out = tmp_path / "candidate"
    candles = tiny_artifact(out)
    metadata = json.loads((out / "metadata.json").read_text())
    metadata["feature_names"][-1] = "btcusdt_log_return_1"
    (out / "metadata.json").write_text(json.dumps(metadata))
    model = ForecastTransformer("m", str(out))
    assert model.load() and model.ready
    protocol(model, "v1")
    window = candles.iloc[-model.min_history :]
    row = lookup.warm_up_row(model.models.primary, window)
    assert row.shape == (1, len(metadata["feature_names"])) and row[0, -1] == 0.0
    with pytest.raises(InvalidInput) as refused:
        run(model, v1_request(window))
    assert refused.value.reason == (
        "this model reads another pair's features too (btcusdt_log_return_1: "
        "features.cross_asset), which one pair's candles cannot make: ask by symbol, "
        '{"instances": [{"symbol": "ETHUSDT"}]}'
    )
