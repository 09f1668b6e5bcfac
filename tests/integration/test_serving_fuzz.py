"""Hypothesis-generated requests against the running servers: never a 5xx, never a traceback."""

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.conftest import NAME
from klinecast.serving.local import v1_request, v2_request

pytestmark = pytest.mark.integration
EXAMPLES = 150
CASES = {"count": 0}
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
fields = st.sampled_from(["open_time", "open", "high", "low", "close", "volume", "trades", "junk"])


def check(response: requests.Response) -> None:
    CASES["count"] += 1
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


@SETTINGS
@given(body=json_values)
def test_random_json_bodies(serving, body):
    for url in (
        f"{serving.transformer_url}/v1/models/{NAME}:predict",
        f"{serving.transformer_url}/v2/models/{NAME}/infer",
        f"{serving.predictor_url}/v1/models/{NAME}:predict",
    ):
        check(
            requests.post(
                url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30
            )
        )


@SETTINGS
@given(index=st.integers(0, 539), field=fields, value=json_values)
def test_one_corrupted_cell_in_a_valid_v1_window(serving, window, index, field, value):
    body = v1_request(window)
    body["instances"][index][field] = value
    check(
        requests.post(f"{serving.transformer_url}/v1/models/{NAME}:predict", json=body, timeout=30)
    )


@SETTINGS
@given(
    tensor=st.integers(0, 5),
    key=st.sampled_from(["name", "shape", "datatype", "data"]),
    value=json_values,
)
def test_one_corrupted_field_in_a_valid_v2_request(serving, window, tensor, key, value):
    body = v2_request(window)
    body["inputs"][tensor][key] = value
    check(requests.post(f"{serving.transformer_url}/v2/models/{NAME}/infer", json=body, timeout=30))


@SETTINGS
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
)
def test_raw_bytes(serving, raw, content_type):
    check(
        requests.post(
            f"{serving.transformer_url}/v1/models/{NAME}:predict",
            data=raw,
            headers={"Content-Type": content_type},
            timeout=30,
        )
    )


def test_report_case_count():
    """Runs last in this module: records how many requests the fuzzing sent."""
    print(f"\nfuzz: {CASES['count']} requests, 0 answered >= 500")
    assert CASES["count"] >= 4 * EXAMPLES
