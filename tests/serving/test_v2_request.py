"""V2 request bodies as the protocol's rules say, in process: JSON and the binary tensor data
extension (the bodies tritonclient itself builds), every input's shape against its data, and
requested outputs answered once, binary where asked."""

import json

import numpy as np
import pytest
import tritonclient.http as triton
from kserve.errors import InvalidInput
from tritonclient.http._utils import _get_inference_request

from klinecast.serving import payload
from klinecast.serving.client import candle_rows, v2_binary_request, v2_compact_request
from klinecast.serving.v2_request import HEADER, answered_outputs, read
from tests.support.candle_factory import synthetic_candles


def triton_body(inputs, outputs=None, *, request_id="r-1", parameters=None) -> tuple[bytes, dict]:
    """The body and headers tritonclient's InferenceServerClient.infer sends."""
    body, json_length = _get_inference_request(
        inputs, request_id, outputs, 0, False, False, 0, None, parameters
    )
    return body, ({} if json_length is None else {HEADER: str(json_length)})


def tensor(name, values, datatype, *, binary):
    one = triton.InferInput(name, list(values.shape), datatype)
    one.set_data_from_numpy(values, binary_data=binary)
    return one


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclients_bodies_read_back_as_sent(binary):
    rows = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    symbols = np.array([b"BTCUSDT", b"ETHUSDT"], dtype=object)
    body, headers = triton_body(
        [tensor("rows", rows, "FP64", binary=binary),
         tensor("n", np.array([5, -6], dtype=np.int64), "INT64", binary=binary),
         tensor("symbol", symbols, "BYTES", binary=binary)],
        [triton.InferRequestedOutput("prob_up", binary_data=binary)],
    )  # fmt: skip
    request = read(body, headers, model_name="m")
    assert request.id == "r-1" and request.model_name == "m"
    got = {t.name: t for t in request.inputs}
    np.testing.assert_array_equal(got["rows"].data, rows)
    assert got["rows"].as_numpy().shape == (4, 3)
    np.testing.assert_array_equal(got["n"].data, [5, -6])
    assert [v.decode() if isinstance(v, bytes) else v for v in got["symbol"].data] == [
        "BTCUSDT", "ETHUSDT",
    ]  # fmt: skip
    (wanted,) = answered_outputs(request, ["prob_up", "direction"])
    assert (wanted.name, wanted.binary_data) == ("prob_up", binary)


def test_the_clients_compact_candles_are_the_same_json_or_binary():
    candles = synthetic_candles(50, start="2021-01-01", seed=1)
    body, headers = v2_binary_request(candles)
    headers = {k.lower(): v for k, v in headers.items()}  # as the server sees them
    binary = payload.candles_from_v2(read(body, headers, model_name="m").inputs)
    as_json = json.dumps(v2_compact_request(candles)).encode()
    parsed = payload.candles_from_v2(read(as_json, {}, model_name="m").inputs)
    assert binary.equals(parsed)
    np.testing.assert_array_equal(binary.to_numpy(dtype=float), candle_rows(candles))
    assert (binary.index == candles.index).all()


def body_of(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # the cases: a shape that does not hold the data's values
        (body_of({"name": "symbol", "shape": [3], "datatype": "BYTES",
                  "data": ["BTCUSDT", "BTCUSDT"]}),
         "input 'symbol': shape [3] holds 3 value(s), its data 2"),
        (body_of({"name": "symbol", "shape": [2, 3], "datatype": "BYTES", "data": ["BTCUSDT"]}),
         "input 'symbol': shape [2, 3] holds 6 value(s), its data 1"),
        (body_of({"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1.0, 2.0], [3.0]]}),
         "input 'x': its data is not nested as its shape [2, 2]"),
        (body_of({"name": "x", "shape": [1], "datatype": "FP64", "data": ["1.5"]}),
         "input 'x': FP64 data holds numbers only"),
        (body_of({"name": "x", "shape": [1], "datatype": "INT64", "data": [1.5]}),
         "input 'x': INT64 data holds integers only"),
        (body_of({"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}),
         "input 'x': a value is out of INT8's range"),
        (body_of({"name": "x", "shape": [-1], "datatype": "FP64", "data": [1.0]}),
         "input 'x': shape: expected a list of sizes"),
        (body_of({"name": "x", "shape": [1], "datatype": "FP128", "data": [1.0]}),
         "input 'x': datatype 'FP128' is not one of the protocol's"),
        (body_of({"name": "x", "shape": [1], "datatype": "FP64"}),
         "input 'x': no data (and no parameters.binary_data_size)"),
        (body_of({"name": "x" * 5000, "shape": [1], "datatype": "FP64"}),
         "... (5000 characters)"),
        (b"not json", "the body is not a valid JSON inference request: invalid literal"),
        (b"[]", 'the body is not a valid JSON inference request: expected a JSON object'),
        (json.dumps({"inputs": 3}).encode(), "inputs: expected a list of tensors"),
        (body_of(outputs=[{"nom": "x"}]), "outputs[0]: expected an object with a name"),
    ],
)  # fmt: skip
def test_a_body_that_breaks_a_rule_is_refused_naming_it(body, message):
    with pytest.raises(InvalidInput) as refused:
        read(body, {}, model_name="m")
    assert message in refused.value.reason


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    prefix = json.dumps(header).encode()
    return prefix + b"".join(chunks), {HEADER: str(len(prefix))}


def described(size: int, datatype="FP64", shape=(2,), **extra) -> dict:
    entry = {"name": "x", "shape": list(shape), "datatype": datatype}
    return {"inputs": [entry | {"parameters": {"binary_data_size": size}} | extra]}


TWO = np.array([1.0, 2.0]).tobytes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (binary_body(described(8), TWO[:8]),
         "binary_data_size 8 is not the 16 bytes of 2 FP64 value(s) of shape [2]"),
        (binary_body(described(16), TWO, b"junk"),
         "the body holds 4 byte(s) after the inputs' binary data"),
        (binary_body(described(24), TWO), "binary_data_size 24 reaches past the body's end"),
        (binary_body(described(16, data=[1.0, 2.0]), TWO),
         "data and parameters.binary_data_size both given"),
        (binary_body(described(6, "BYTES", (1,)), b"\x09\x00\x00\x00BTC"),
         "its binary data is not 1 BYTES element(s) of shape [1]"),
        ((b'{"inputs": []}', {HEADER: "900"}),
         "Inference-Header-Content-Length 900 is not the length of the JSON object"),
        ((b'{"inputs": []}', {HEADER: "x"}),
         "Inference-Header-Content-Length x is not the length"),
    ],
)  # fmt: skip
def test_binary_data_that_breaks_a_rule_is_refused_naming_it(body, message):
    with pytest.raises(InvalidInput) as refused:
        read(body[0], body[1], model_name="m")
    assert message in refused.value.reason


def test_an_output_asked_twice_is_answered_once_and_binary_as_the_protocol_says():
    body = body_of(
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]},
        outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}},
                 {"name": "a", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True},
    )  # fmt: skip
    wanted = answered_outputs(read(body, {}, model_name="m"), ["a", "b", "c"])
    # the first asking of `a` counts; binary_data_output applies where an output says nothing
    assert [(o.name, o.binary_data) for o in wanted] == [("a", True), ("b", False)]
    everything = answered_outputs(read(body_of(), {}, model_name="m"), ["a", "b"])
    assert [(o.name, o.binary_data) for o in everything] == [("a", False), ("b", False)]
