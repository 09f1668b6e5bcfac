"""Bounded retries with exponential backoff (tenacity), one policy per kind of remote.

Each remote decides which failures are worth another try by raising `Retryable`; any other
exception ends the call at once. After the last attempt, `GaveUp` carries the count and the
last reason, and the caller words its own error from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")


@dataclass(frozen=True)
class RetrySettings:
    """How hard to try one remote call."""

    attempts: int = 4
    #: the wait before the second attempt, doubled after every further failure
    backoff_s: float = 0.5
    #: the timeout of one attempt (for the remotes that take one)
    timeout_s: float = 30.0


#: How losing a race shows in a database that several processes open at once: creating the same
#: new schema, or writing while another writer holds SQLite's lock (SQLite and PostgreSQL
#: wordings). The next attempt finds the schema there, or the lock free.
DATABASE_RACE_SIGNS = (
    "already exists",
    "database is locked",
    "UNIQUE constraint failed",
    "duplicate key",
)


class Retryable(Exception):
    """A failure that another attempt may not meet (a 5xx, a timeout, a dropped connection)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GaveUp(Exception):
    """Every attempt failed with a Retryable failure."""

    def __init__(self, attempts: int, reason: str):
        super().__init__(f"failed {attempts} times; last: {reason}")
        self.attempts = attempts
        self.reason = reason


def call_with_retries(
    fn: Callable[[], T],
    *,
    settings: RetrySettings,
    what: str,
    log: logging.Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """fn(), tried again after a Retryable failure until settings.attempts are spent.

    Raises:
        GaveUp: the last attempt failed with a Retryable failure too.
        Exception: whatever else fn raised, at once.
    """

    def warn(state: tenacity.RetryCallState) -> None:
        log.warning(
            "%s: %s; retry %d/%d in %.1f s",
            what,
            state.outcome.exception().reason,
            state.attempt_number,
            settings.attempts,
            state.next_action.sleep,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Retryable),
        stop=tenacity.stop_after_attempt(settings.attempts),
        wait=tenacity.wait_exponential(multiplier=settings.backoff_s),
        before_sleep=warn,
        sleep=sleep,
    )
    try:
        return retrying(fn)
    except tenacity.RetryError as exc:
        last = exc.last_attempt
        raise GaveUp(last.attempt_number, last.exception().reason) from None
