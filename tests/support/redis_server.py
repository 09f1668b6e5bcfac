"""Redis for tests: $KLINECAST_TEST_REDIS (GitLab CI's service), else the machine's on
127.0.0.1:6379, else a private `redis-server`; and a TCP cut-off in front of one, to take it away
and bring it back with its data intact.

Tests use their own Feast project (the key space), so they never touch another user's keys.
The private server comes from Debian's redis-server package, which `make setup` installs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager

from tests.support.tcp_relay import TcpRelay

SHARED = ("127.0.0.1", 6379)
FORCE_PRIVATE_ENV = "KLINECAST_TEST_PRIVATE_REDIS"
#: A Redis the environment provides (the `redis` service of .gitlab-ci.yml's test job).
GIVEN_ENV = "KLINECAST_TEST_REDIS"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_address(port: int):
    """Yields "host:port" of a Redis: $KLINECAST_TEST_REDIS, the machine's, or a private one."""
    given = os.environ.get(GIVEN_ENV)
    if given:
        host, given_port = given.rsplit(":", 1)
        if not answers(host, int(given_port)):
            raise RuntimeError(f"${GIVEN_ENV} names a Redis that does not answer: {given}")
        yield given
        return
    if not os.environ.get(FORCE_PRIVATE_ENV) and answers(*SHARED):
        yield f"{SHARED[0]}:{SHARED[1]}"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "no Redis answers on 127.0.0.1:6379 and there is no redis-server to start one; "
            "run `make setup` (it installs Debian's redis-server)"
        )
    root = tempfile.mkdtemp(prefix="klinecast-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            root,
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private redis-server on port {port} did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


#: A relay in front of a Redis: `cut()` takes it away, `restore()` brings it back, data intact.
Cutoff = TcpRelay


def drop_project(address: str, project: str) -> None:
    """Deletes every key of a test's own Feast project (its key space) from the Redis at
    address (host:port)."""
    import redis as redis_py

    host, port = address.rsplit(":", 1)
    client = redis_py.Redis(host=host, port=int(port))
    for key in client.scan_iter():
        if project.encode() in key:
            client.delete(key)
