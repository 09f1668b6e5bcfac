import logging

import pytest

from klinecast.retries import GaveUp, Retryable, RetrySettings, call_with_retries

LOG = logging.getLogger("test")


def flaky(failures: list[Exception], value="done"):
    """A call that raises the given exceptions in turn, then returns value."""
    calls = []

    def call():
        calls.append(len(calls))
        if failures:
            raise failures.pop(0)
        return value

    return call, calls


def test_a_retryable_failure_is_tried_again_with_doubling_waits(caplog):
    call, calls = flaky([Retryable("HTTP 503"), Retryable("timed out")])
    waits = []
    settings = RetrySettings(attempts=4, backoff_s=0.5)
    with caplog.at_level(logging.WARNING):
        result = call_with_retries(
            call, settings=settings, what="GET x", log=LOG, sleep=waits.append
        )
    assert result == "done" and len(calls) == 3
    assert waits == [0.5, 1.0]
    assert "GET x: HTTP 503; retry 1/4 in 0.5 s" in caplog.text


def test_after_the_last_attempt_it_gives_up_with_the_count_and_the_last_reason():
    call, calls = flaky([Retryable(f"HTTP 50{i}") for i in range(5)])
    with pytest.raises(GaveUp, match=r"failed 3 times; last: HTTP 502") as gave_up:
        call_with_retries(
            call, settings=RetrySettings(attempts=3), what="x", log=LOG, sleep=lambda s: None
        )
    assert len(calls) == 3 and gave_up.value.attempts == 3


def test_any_other_failure_ends_the_call_at_once():
    call, calls = flaky([ValueError("HTTP 403")])
    with pytest.raises(ValueError, match="HTTP 403"):
        call_with_retries(call, settings=RetrySettings(), what="x", log=LOG, sleep=lambda s: None)
    assert len(calls) == 1
