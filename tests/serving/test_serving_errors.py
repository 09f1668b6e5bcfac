"""The servers' error handling in process: a bug answers 500 without its traceback or its
exception's name (both go to the log); a refusal of kserve's is one log line."""

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from klinecast.serving.protocol import install, one_line_for_refusals


class _Ready:
    name = "m"
    ready = True
    absent = None


def test_a_bug_is_500_with_the_details_in_the_log_only(caplog):
    app = FastAPI()

    @app.post("/v1/models/m:predict")
    def boom():
        raise IndexError("list index out of range")

    install(app, _Ready())
    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="klinecast.serving"):
        response = client.post("/v1/models/m:predict", json={"instances": []})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server log has details"}
    assert "IndexError" not in response.text
    (record,) = [r for r in caplog.records if r.name == "klinecast.serving"]
    assert record.exc_info and isinstance(record.exc_info[1], IndexError)  # a bug: traceback kept


def logged_through_the_filter(exc: BaseException) -> list[str]:
    """The lines a logger with the filter writes for `logger.exception(...)` of exc."""
    import io

    stream = io.StringIO()
    logger = logging.getLogger(f"kserve.probe{id(exc)}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(one_line_for_refusals)
    try:
        raise exc
    except BaseException:
        logger.exception("Exception:")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda errors: errors.InvalidInput("bad"), 400),
        (lambda errors: errors.ModelNotFound("m"), 404),
        (lambda errors: errors.ModelNotReady("m"), 503),
    ],
)
def test_kserve_refusals_become_one_line(make, status):
    from kserve import errors

    exc = make(errors)
    lines = logged_through_the_filter(exc)
    assert len(lines) == 1 and lines[0].startswith(f"rejected: {status} "), lines


def test_other_errors_keep_their_traceback():
    lines = logged_through_the_filter(RuntimeError("a bug"))
    assert lines[0] == "Exception:" and "Traceback" in "\n".join(lines)
    assert lines[-1] == "RuntimeError: a bug"
