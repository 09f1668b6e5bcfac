"""Hypothesis-generated requests against the running servers: never a 5xx, never a traceback.

Each test runs its own Hypothesis search and then checks that it sent requests at all, so no
test depends on another or on the order they run in.
"""

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klinecast.serving.client import v1_request, v2_request
from tests.support.helpers import NAME, v1, v2

pytestmark = pytest.mark.integration
EXAMPLES = 150
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


def fuzz(**strategies):
    """Runs the decorated request-sender on EXAMPLES generated inputs; returns the answers."""

    def run(send) -> list[requests.Response]:
        answers: list[requests.Response] = []
        SETTINGS(given(**strategies)(lambda **drawn: answers.extend(send(**drawn))))()
        return answers

    return run


def check(answers: list[requests.Response]) -> None:
    assert len(answers) >= EXAMPLES, f"only {len(answers)} requests were sent"
    for answer in answers:
        assert answer.status_code < 500, answer.text
        assert "Traceback" not in answer.text
    # a fuzzer that only ever met one kind of refusal did not explore much
    assert len({a.status_code for a in answers} | {a.text[:40] for a in answers}) > 2


def post(url: str, **kwargs) -> requests.Response:
    return requests.post(url, timeout=30, **kwargs)


def test_random_json_bodies(serving):
    urls = (
        f"{serving.transformer_url}/v1/models/{NAME}:predict",
        f"{serving.transformer_url}/v2/models/{NAME}/infer",
        f"{serving.predictor_url}/v1/models/{NAME}:predict",
    )

    def send(body):
        data, headers = json.dumps(body), {"Content-Type": "application/json"}
        return [post(url, data=data, headers=headers) for url in urls]

    check(fuzz(body=json_values)(send))


def test_one_corrupted_cell_in_a_valid_v1_window(serving, window):
    valid = v1_request(window)

    def send(index, field, value):
        body = json.loads(json.dumps(valid))
        body["instances"][index][field] = value
        return [v1(serving, body)]

    check(fuzz(index=st.integers(0, 539), field=fields, value=json_values)(send))


def test_one_corrupted_field_in_a_valid_v2_request(serving, window):
    valid = v2_request(window)

    def send(tensor, key, value):
        body = json.loads(json.dumps(valid))
        body["inputs"][tensor][key] = value
        return [v2(serving, body)]

    keys = st.sampled_from(["name", "shape", "datatype", "data"])
    check(fuzz(tensor=st.integers(0, 5), key=keys, value=json_values)(send))


def test_raw_bytes(serving):
    def send(raw, content_type):
        url = f"{serving.transformer_url}/v1/models/{NAME}:predict"
        return [post(url, data=raw, headers={"Content-Type": content_type})]

    types = st.sampled_from(["application/json", "text/plain", ""])
    check(fuzz(raw=st.binary(max_size=200), content_type=types)(send))
