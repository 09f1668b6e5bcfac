"""Both servers answer exactly as the Open Inference Protocol's OpenAPI spec says (its schemas,
validated by jsonschema against real answers), refuse in its error shape, and log every
refusal as one escaped line."""

import json
import time
from functools import cache
from urllib.parse import quote

import pytest
import requests
import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from klinecast.research.features import compute_features
from klinecast.serving.client import v2_request
from tests.support.helpers import NAME
from tests.support.paths import REPO

pytestmark = pytest.mark.integration
SPEC = REPO / "tests/support/specs/rest_predict_v2.yaml"
FORGED = "2026-01-01 00:00:00,000 ERROR klinecast: forged"


@cache
def validator(schema: str) -> Draft4Validator:
    """The spec's components/schemas/<schema> (OpenAPI 3.0 schemas are JSON Schema draft 4
    with extensions none of these use)."""
    spec = yaml.safe_load(SPEC.read_text())
    registry = Registry().with_resource("spec", Resource.from_contents(spec, DRAFT4))
    return Draft4Validator({"$ref": f"spec#/components/schemas/{schema}"}, registry=registry)


def valid(schema: str, answer: requests.Response) -> dict:
    body = answer.json()
    errors = [e.message for e in validator(schema).iter_errors(body)]
    assert errors == [], (schema, errors, body)
    return body


def test_the_validator_refuses_a_null_where_the_spec_has_an_object():
    body = {"model_name": "m", "outputs": [], "parameters": None}
    assert list(validator("inference_response").iter_errors(body))
    assert list(validator("metadata_model_response").iter_errors({"name": "m", "platform": "",
                                                                  "versions": None}))  # fmt: skip


def infer_body(serving, window, url: str) -> dict:
    """A V2 request each server takes: candles for the transformer, features for the predictor."""
    if url == serving.transformer_url:
        return v2_request(window)
    from klinecast.release import registry

    names = list(registry.read_artifact_metadata(serving.storage_uri).feature_names)
    row = compute_features(window, indicators=names, interval=window.index.freq or "1h")
    values = row.frame[names].iloc[-1:].to_numpy().tolist()
    return {"inputs": [{"name": "features", "shape": [1, len(names)], "datatype": "FP64",
                        "data": values}]}  # fmt: skip


@pytest.fixture(params=["transformer", "predictor"])
def url(request, serving):
    return getattr(serving, f"{request.param}_url")


def test_server_and_model_metadata_and_answers_validate(serving, window, url):
    server = valid("metadata_server_response", requests.get(f"{url}/v2", timeout=10))
    # the binary tensor data extension is on; the repository extension is off: not advertised
    assert server["extensions"] == ["binary_tensor_data"]
    model = valid("metadata_model_response", requests.get(f"{url}/v2/models/{NAME}", timeout=10))
    assert model["name"] == NAME
    answer = requests.post(
        f"{url}/v2/models/{NAME}/infer", json=infer_body(serving, window, url), timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = valid("inference_response", answer)
    assert "null" not in answer.text and body["model_version"]


def test_the_served_version_works_in_versions_paths_and_no_other(serving, window, url):
    version = requests.post(
        f"{url}/v2/models/{NAME}/infer", json=infer_body(serving, window, url), timeout=30
    ).json()["model_version"]
    base = f"{url}/v2/models/{NAME}/versions/{quote(version, safe='')}"
    valid("metadata_model_response", requests.get(base, timeout=10))
    assert requests.get(f"{base}/ready", timeout=10).status_code == 200
    answer = requests.post(f"{base}/infer", json=infer_body(serving, window, url), timeout=30)
    assert valid("inference_response", answer)["model_version"] == version
    other = requests.post(
        f"{url}/v2/models/{NAME}/versions/v0/infer", json=infer_body(serving, window, url),
        timeout=30,
    )  # fmt: skip
    assert other.status_code == 404
    assert version in valid("inference_error_response", other)["error"]


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": [', 400),
        ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": [{"name": "\xff"}]}', 400),
        ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": 3}', 400),
        ("POST", "/v2/models/nothing/infer", b'{"inputs": []}', 404),
        ("GET", f"/v2/models/{NAME}/infer", None, 405),
        ("GET", f"/v1/models/{NAME}:predict", None, 405),
        ("GET", "/nothing/here", None, 404),
        ("POST", f"/v2/repository/models/{NAME}/unload", b"", 404),
    ],
)
def test_every_refusal_is_the_specs_error_object_and_one_log_line(
    serving, url, method, path, data, status
):
    log = serving.log_dir / (
        "transformer.log" if url == serving.transformer_url else "predictor.log"
    )
    before = log.stat().st_size
    answer = requests.request(
        method, f"{url}{path}", data=data, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == status, answer.text
    valid("inference_error_response", answer)
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    lines = new_lines(log, before)
    assert len(lines) == 1 and " WARNING " in lines[0] and f"rejected: {status}" in lines[0], lines


def new_lines(log, before: int) -> list[str]:
    """What the server wrote to its log after `before` bytes (it writes a record at once)."""
    time.sleep(0.2)
    with open(log, "rb") as file:
        file.seek(before)
        return file.read().decode(errors="replace").splitlines()


@pytest.mark.parametrize(
    "body",
    [
        # pydantic names the offending key, newline and all, in its error
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [1],
                    "datatype": "FP64",
                    "data": [1],
                    "parameters": {f"k\n{FORGED}": [1, {"a": 2}]},
                }
            ]
        },  # fmt: skip
        {"parameters": {f"k\r\n{FORGED}\u2028": {"x": [1]}}, "inputs": []},
        {"inputs": [{"name": f"a\n{FORGED}", "shape": [1], "datatype": "FP64", "data": [1]}]},
    ],
)
def test_a_request_cannot_forge_a_log_line(serving, body):
    log = serving.log_dir / "transformer.log"
    before = log.stat().st_size
    answer = requests.post(
        f"{serving.transformer_url}/v2/models/{NAME}/infer", data=json.dumps(body),
        headers={"Content-Type": "application/json"}, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 400
    lines = new_lines(log, before)
    assert len(lines) == 1 and "rejected: 400" in lines[0], lines
    assert not any(line.startswith(FORGED[:23]) for line in lines)


def test_a_very_long_request_value_is_cut_in_the_answer_and_the_log(serving):
    """A 5,000-character model name: the 404 names it cut, and its log line stays short."""
    from klinecast.serving.protocol import loggable

    log = serving.log_dir / "transformer.log"
    before = log.stat().st_size
    answer = requests.post(
        f"{serving.transformer_url}/v2/models/{'k' * 5000}/infer", json={"inputs": []},
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 404
    error = valid("inference_error_response", answer)["error"]
    assert len(error) < 200 and "(5000 characters)" in error, error
    (line,) = new_lines(log, before)
    assert len(line) < 600 and "rejected: 404" in line
    assert loggable("x" * 5000).endswith("... (4700 more characters)")
