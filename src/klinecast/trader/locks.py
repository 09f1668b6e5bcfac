"""Exclusive locks across processes, in the ledger's own database: a PostgreSQL advisory lock
(released by the server when the holder's session ends, a killed process included), or an
flock on a file beside a SQLite database (released by the kernel when the holder dies)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from klinecast.errors import KlinecastError

POLL_S = 0.1


class LockBusy(KlinecastError):
    """Another process held the lock for longer than the caller would wait."""


@contextmanager
def exclusive(engine: sa.Engine, name: str, *, wait_s: float) -> Iterator[None]:
    """Holds the lock `name` for the block, waiting up to wait_s for another holder.

    Raises:
        LockBusy: still held by another process after wait_s.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with _advisory(engine, name, wait_s=wait_s):
            yield
    elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _flock(f"{engine.url.database}.lock", name, wait_s=wait_s):
            yield
    else:  # an in-memory SQLite has one process by nature
        yield


@contextmanager
def _advisory(engine: sa.Engine, name: str, *, wait_s: float) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        deadline = time.monotonic() + wait_s
        while not connection.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar():
            connection.commit()
            if time.monotonic() > deadline:
                raise LockBusy(f"{name} is held by another process ({wait_s:.0f} s waited)")
            time.sleep(POLL_S)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            connection.commit()


@contextmanager
def _flock(path: str, name: str, *, wait_s: float) -> Iterator[None]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockBusy(
                        f"{name} is held by another process ({wait_s:.0f} s waited)"
                    ) from None
                time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
