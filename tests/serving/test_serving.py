"""The real kserve model servers on 127.0.0.1: V1, V2, bad input, missing model, outages, parity."""

import datetime as dt
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import requests

from klinecast.config import Params
from klinecast.research import strategy
from klinecast.research.features import compute_features
from klinecast.serving.client import (
    v1_compact_request,
    v1_request,
    v2_binary_request,
    v2_compact_request,
    v2_request,
)
from klinecast.serving.local import LocalServing
from klinecast.serving.offline import offline_probabilities
from tests.support.archive_server import wait_for_http
from tests.support.helpers import NAME, RULE, free_port, v1, v2
from tests.support.local_http import JsonHandler, LocalServer

pytestmark = pytest.mark.integration
MIN_HISTORY = Params().features.min_history
JSON = {"Content-Type": "application/json"}


def test_v1_and_v2_give_the_same_answer(serving, window):
    one = v1(serving, v1_request(window))
    assert one.status_code == 200, one.text
    answer = one.json()["predictions"][0]
    assert 0 <= answer["prob_up"] <= 1
    # the model's rule from a flat book: up beyond 0.5 + entry band, down below 0.5 - it
    decided = pd.Timestamp(answer["feature_time"]).hour
    position = strategy.next_position(answer["prob_up"], RULE, decision_hour=decided)
    expected = {1: "up", -1: "down", 0: "flat"}[position]
    assert answer["direction"] == expected
    assert answer["strategy"] == RULE.as_dict() | {"horizon_hours": 2}
    assert answer["feature_time"] == "2022-01-01T00:00:00+00:00"  # the last candle's close
    assert answer["model_version"]
    two = v2(serving, v2_request(window))
    assert two.status_code == 200, two.text
    outputs = {o["name"]: o["data"][0] for o in two.json()["outputs"]}
    assert json.loads(outputs.pop("strategy")) == answer.pop("strategy")
    assert outputs == answer


def test_iso_timestamps_are_accepted(serving, window):
    body = v1_request(window)
    for row, ts in zip(body["instances"], window.index, strict=True):
        row["open_time"] = ts.isoformat()
    assert v1(serving, body).json() == v1(serving, v1_request(window)).json()


def test_predictor_speaks_v1_and_v2_itself(serving, artifact, window):
    features = compute_features(
        window, indicators=Params().features.indicators, interval=dt.timedelta(hours=1)
    ).frame
    row = features[list(Params().features.indicators)].to_numpy()[-1:].tolist()
    a = requests.post(
        f"{serving.predictor_url}/v1/models/{NAME}:predict", json={"instances": row}, timeout=10
    )
    b = requests.post(
        f"{serving.predictor_url}/v2/models/{NAME}/infer",
        timeout=10,
        json={
            "inputs": [
                {"name": "features", "shape": [1, len(row[0])], "datatype": "FP64", "data": row}
            ]
        },
    )
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["predictions"][0] == pytest.approx(b.json()["outputs"][0]["data"][0])


def mutate(window, change):
    body = v1_request(window)
    change(body["instances"])
    return body


BAD_V1 = {
    "too few candles": (
        lambda rows: rows.__delitem__(slice(0, 100)),
        f"the model needs at least {MIN_HISTORY}",
    ),
    "unsorted": (lambda rows: rows.insert(300, rows.pop(301)), "out-of-order open_time"),
    "duplicate": (lambda rows: rows.__setitem__(301, dict(rows[300])), "duplicate open_time"),
    "NaN as text": (
        lambda rows: rows[5].__setitem__("close", "NaN"),
        "close is 'NaN', not a number",
    ),
    "negative price": (lambda rows: rows[5].update(open=-1.0, low=-2.0), "a price is not positive"),
    "missing column": (lambda rows: [r.pop("volume") for r in rows], "missing column 'volume'"),
    # the model reads the taker-buy share, so its column is required too
    "missing taker volume": (
        lambda rows: [r.pop("taker_buy_volume") for r in rows],
        "missing column 'taker_buy_volume'",
    ),
    "one row lacks a column": (lambda rows: rows[7].pop("high"), "instances[7] lacks 'high'"),
    "bad timestamp": (
        lambda rows: rows[0].__setitem__("open_time", "yesterday"),
        "open_time 'yesterday'",
    ),
    "off the hour": (
        lambda rows: rows[0].__setitem__("open_time", rows[0]["open_time"] + 1),
        "not on a 1:00:00 boundary",
    ),
    "epoch out of range": (
        lambda rows: rows[0].__setitem__("open_time", 9223372036855000),
        "between 2009 and 2100",
    ),
    "not objects": (lambda rows: rows.__setitem__(0, [1, 2, 3]), "instances[0] is not an object"),
}


@pytest.mark.parametrize("case", list(BAD_V1))
def test_bad_candles_get_400_with_a_message(serving, window, case):
    change, message = BAD_V1[case]
    response = v1(serving, mutate(window, change))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        ("v1", b"not json", JSON, "Unrecognized request format"),
        ("v2", b"not json", JSON, "not a valid JSON inference request"),
        ("v1", b'{"instances": [{"open": NaN}]}', JSON, "Unrecognized request format"),
        ("v1", b"{}", {"Content-Type": "text/plain"}, "Content-Type 'text/plain' is not supported"),
        ("v2", b"{}", {"Content-Type": "application/x-www-form-urlencoded"}, "is not supported"),
        ("v1", b'{"instances": 3}', JSON, "instances"),
        ("v1", b'{"rows": []}', JSON, 'expected a JSON object {"instances"'),
        (
            "v2",
            b'{"inputs": [{"name": "close", "shape": [1], "datatype": "FP64", "data": [1.0]}]}',
            JSON,
            "missing input tensor(s)",
        ),
    ],
)
def test_malformed_requests_get_400(serving, path, body, headers, message):
    url = (
        f"{serving.transformer_url}/v1/models/{NAME}:predict"
        if path == "v1"
        else f"{serving.transformer_url}/v2/models/{NAME}/infer"
    )
    response = requests.post(url, data=body, headers=headers, timeout=10)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert "Traceback" not in response.text


def test_v2_with_a_missing_column_and_unequal_tensors(serving, window):
    body = v2_request(window)
    body["inputs"] = [t for t in body["inputs"] if t["name"] != "low"]
    assert "missing input tensor(s) ['low']" in v2(serving, body).json()["error"]
    body = v2_request(window)
    body["inputs"][1]["data"] = body["inputs"][1]["data"][:-1]
    body["inputs"][1]["shape"] = [MIN_HISTORY - 1]
    response = v2(serving, body)
    assert response.status_code == 400 and "differ in length" in response.json()["error"]


def test_a_gap_is_real_history_unless_the_newest_candle_is_too_soon_after_it(
    serving, mirror_candles
):
    """Windows hold gaps (exchange outages): one deep in the window is answered; one four
    candles before the newest leaves the hourly indicators no row to answer with: 400."""
    longer = mirror_candles.loc[:"2021-12-31 23:00"].iloc[-MIN_HISTORY - 1 :]
    deep = v1(serving, mutate(longer, lambda rows: rows.__delitem__(300)))
    assert deep.status_code == 200, deep.text
    late = v1(serving, mutate(longer, lambda rows: rows.__delitem__(-5)))
    assert late.status_code == 400, late.text
    assert "the newest candle is 4 candle(s) after a gap (1 missing" in late.json()["error"]


def post_candles(session, serving, window, form: str) -> float:
    """prob_up for window, sent in one of the forms a client may use."""
    base = serving.transformer_url
    if form in ("v1 objects", "v1 compact"):
        body = v1_request(window) if form == "v1 objects" else v1_compact_request(window)
        answer = session.post(f"{base}/v1/models/{NAME}:predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"][0]["prob_up"]
    if form == "v2 binary":
        data, headers = v2_binary_request(window)
    else:
        body = v2_request(window) if form == "v2 columns" else v2_compact_request(window)
        data, headers = json.dumps(body).encode(), JSON
    answer = session.post(f"{base}/v2/models/{NAME}/infer", data=data, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return next(o for o in answer.json()["outputs"] if o["name"] == "prob_up")["data"][0]


FORMS = ("v1 objects", "v1 compact", "v2 columns", "v2 compact", "v2 binary")


def test_parity_rest_equals_offline_prediction_on_100_real_hours(serving, artifact, mirror_candles):
    """Every form a client may send candles in (20 hours each) answers what the batch path
    does on full history, to 1e-6."""
    offline = offline_probabilities(mirror_candles, artifact)
    stamps = mirror_candles.index
    run = (
        pd.Series(1, index=stamps)
        .groupby((stamps.to_series().diff() != pd.Timedelta(hours=1)).cumsum())
        .cumcount()
    )
    # converged full-history features: the longest window and 1,500 candles of the row's own run
    # (a window may hold gaps, as real history does)
    eligible = np.flatnonzero(run.to_numpy() >= 1500)
    eligible = eligible[eligible >= MIN_HISTORY + 1500]
    ends = np.sort(np.random.default_rng(11).choice(eligible, size=100, replace=False))
    worst = dict.fromkeys(FORMS, 0.0)
    session = requests.Session()
    for i, end in enumerate(ends):
        form = FORMS[i % len(FORMS)]
        prob = post_candles(session, serving, mirror_candles.iloc[end - MIN_HISTORY + 1 : end + 1], form)
        worst[form] = max(worst[form], abs(prob - offline[stamps[end]]))
    assert max(worst.values()) <= 1e-6, worst


def test_tritonclient_sends_candles_as_binary_tensors_and_gets_the_json_answer(serving, window):
    """The compact form, [n, 9] candles and INT64 open times, as binary data (tritonclient's
    default), the outputs asked back as binary too: the same answer as JSON, to 1e-6."""
    import tritonclient.http as triton

    from klinecast.serving.client import candle_rows, open_times

    client = triton.InferenceServerClient(serving.transformer_url.removeprefix("http://"))
    metadata = client.get_model_metadata(NAME)
    assert {"name": "candles", "datatype": "FP64", "shape": [-1, 9]} in metadata["inputs"]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    expected = v1(serving, v1_request(window)).json()["predictions"][0]
    for binary in (True, False):
        times = triton.InferInput("open_time", [len(window)], "INT64")
        times.set_data_from_numpy(open_times(window), binary_data=binary)
        rows = triton.InferInput("candles", [len(window), 9], "FP64")
        rows.set_data_from_numpy(candle_rows(window), binary_data=binary)
        wanted = [triton.InferRequestedOutput(name, binary_data=binary)
                  for name in ("prob_up", "model_version", "feature_time")]  # fmt: skip
        result = client.infer(NAME, [times, rows], outputs=wanted, request_id="c-1")
        assert result.get_response()["id"] == "c-1"
        binary_outputs = [o for o in result.get_response()["outputs"] if "parameters" in o]
        assert len(binary_outputs) == (3 if binary else 0)  # as asked
        assert float(result.as_numpy("prob_up")[0]) == pytest.approx(expected["prob_up"], abs=1e-6)
        (version,) = result.as_numpy("model_version")
        assert (version.decode() if isinstance(version, bytes) else version) == expected["model_version"]


@pytest.mark.parametrize("path", ["v1", "v2"])
def test_both_servers_word_a_body_that_is_not_utf8_alike(serving, path):
    body = b'{"instances": ["\xff"]}' if path == "v1" else b'{"inputs": ["\xff"]}'
    errors = []
    for url in (serving.transformer_url, serving.predictor_url):
        where = f"{url}/v1/models/{NAME}:predict" if path == "v1" else f"{url}/v2/models/{NAME}/infer"
        answer = requests.post(where, data=body, headers=JSON, timeout=10)
        assert answer.status_code == 400, answer.text
        errors.append(answer.json()["error"])
    assert errors[0] == errors[1] and "UTF-8" in errors[0], errors


def test_missing_model_leaves_the_server_up_but_not_ready(tmp_path):
    port = free_port()
    log = tmp_path / "predictor.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klinecast.serving.server",
                "predictor",
                "--model-name",
                NAME,
                "--storage-uri",
                str(tmp_path / "nothing-here"),
                "--http-port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status = requests.get(f"{url}/v1/models/{NAME}", timeout=1).status_code
                break
            except requests.ConnectionError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert status == 503
        response = requests.post(
            f"{url}/v1/models/{NAME}:predict", json={"instances": [[0] * 10]}, timeout=5
        )
        assert response.status_code == 503 and "Traceback" not in response.text
        time.sleep(1)
        assert process.poll() is None  # still serving, not crash-looping
        assert f"model {NAME} NOT loaded from {tmp_path / 'nothing-here'}" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_predictor_down_gives_a_quick_503_from_the_transformer(artifact, window, tmp_path):
    with LocalServing(NAME, str(artifact), free_port(), free_port(), log_dir=tmp_path) as local:
        local.stop("predictor")
        started = time.monotonic()
        response = v1(local, v1_request(window))
        assert time.monotonic() - started < 5
        assert response.status_code in (502, 503)
        assert "predictor is unreachable" in response.json()["error"]
        assert "Traceback" not in response.text


class _MalformedPredictor(JsonHandler):
    """A predictor that answers 200 with whatever `answer` holds (the test sets it)."""

    answer: bytes = b"{}"

    def do_GET(self):
        self._send(200, {"status": "alive"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = type(self).answer
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module", params=["v1", "v2"])
def malformed_predictor(request, artifact, tmp_path_factory):
    """A transformer in front of _MalformedPredictor, speaking V1 or V2 to it."""
    handler = type("Handler", (_MalformedPredictor,), {})
    with LocalServer(handler) as fake:
        port = free_port()
        log = tmp_path_factory.mktemp("malformed") / "transformer.log"
        argv = [sys.executable, "-m", "klinecast.serving.server", "transformer"]
        argv += ["--model-name", NAME, "--storage-uri", str(artifact), "--http-port", str(port)]
        argv += ["--predictor-host", fake.url.removeprefix("http://")]
        argv += ["--predictor-protocol", request.param]
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v2/health/ready", process=process)
            yield handler, f"http://127.0.0.1:{port}/v1/models/{NAME}:predict", log
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b'"a string"',
        b"[]",
        b'{"predictions": []}',
        b'{"predictions": [7.5]}',
        b'{"predictions": ["x"]}',
        b'{"rows": 1}',
        b'{"outputs": "x"}',
        b'{"outputs": [{"name": "predict", "shape": [1], "datatype": "FP64", "data": []}]}',
        b'{"outputs": [{"name": "predict", "shape": [1], "datatype": "FP64", "data": [7.5]}]}',
    ],
)
def test_a_malformed_predictor_answer_is_502_not_500(malformed_predictor, window, answer):
    handler, url, log = malformed_predictor
    handler.answer = answer
    before = log.read_text().count("rejected: 502")
    response = requests.post(url, json=v1_request(window), timeout=30)
    assert response.status_code == 502, response.text
    assert response.json()["error"].startswith("the predictor answered malformed JSON")
    text = log.read_text()
    assert text.count("rejected: 502") == before + 1  # one line per refusal
    assert "Traceback" not in text


def test_refusals_of_kserve_itself_are_one_line_each(tmp_path):
    """An unready model (503) and an unknown model (404), on V1 and V2: one log line each."""
    port = free_port()
    log = tmp_path / "predictor.log"
    argv = [sys.executable, "-m", "klinecast.serving.server", "predictor", "--model-name", NAME]
    argv += ["--storage-uri", str(tmp_path / "nothing-here"), "--http-port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    body = {"instances": [[0.0]]}
    v2_body = {"inputs": [{"name": "f", "shape": [1, 1], "datatype": "FP64", "data": [0.0]}]}
    try:
        wait_for_http(f"{base}/v2/health/live", process=process)
        for url, payload, status in [
            (f"{base}/v1/models/{NAME}:predict", body, 503),
            (f"{base}/v2/models/{NAME}/infer", v2_body, 503),
            (f"{base}/v1/models/other:predict", body, 404),
            (f"{base}/v2/models/other/infer", v2_body, 404),
        ]:
            before = log.read_text().count(f"rejected: {status}")
            response = requests.post(url, json=payload, timeout=10)
            assert response.status_code == status, (url, response.text)
            assert "Traceback" not in response.text
            text = log.read_text()
            assert text.count(f"rejected: {status}") == before + 1, text[-2000:]
        assert "Traceback" not in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_health_ready_is_false_while_the_model_is_not(tmp_path):
    port = free_port()
    argv = [sys.executable, "-m", "klinecast.serving.server", "predictor", "--model-name", NAME]
    argv += ["--storage-uri", str(tmp_path / "nothing-here"), "--http-port", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/health/live", process=process)
        ready = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5).ok
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_predictor_speaks_the_open_inference_protocol_to_tritonclient(serving, artifact):
    """Metadata with the real tensor, the request id echoed, the model version set, the
    requested outputs honoured (an unknown one refused), JSON and binary."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    from klinecast.release import registry

    metadata = registry.read_artifact_metadata(artifact)
    width = len(metadata.feature_names)
    client = triton.InferenceServerClient(serving.predictor_url.removeprefix("http://"))
    assert client.is_model_ready(NAME)
    described = client.get_model_metadata(NAME)
    assert described["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, width]}]
    assert described["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    rows = np.zeros((2, width), dtype=np.float64)
    for binary in (False, True):
        tensor = triton.InferInput("features", [2, width], "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        wanted = [triton.InferRequestedOutput("predict", binary_data=binary)]
        result = client.infer(NAME, [tensor], request_id="p-7", outputs=wanted)
        response = result.get_response()
        assert response["id"] == "p-7" and response["model_version"]
        assert result.as_numpy("predict").shape == (2,)
    with pytest.raises(InferenceServerException, match="unknown output"):
        client.infer(NAME, [tensor], outputs=[triton.InferRequestedOutput("other")])
