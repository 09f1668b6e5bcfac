"""PostgreSQL for tests: $KLINECAST_TEST_POSTGRES (GitLab CI's service), else the machine's
server on 127.0.0.1:5432, else a private one.

Each test session gets a database of its own on that server, dropped when the session ends, so
two sessions at once (the lint and test jobs that gitlab-ci-local runs side by side, or another
user's run on the shared server) never create or drop each other's tables.

The private server is started from Debian's postgresql binaries (`make setup` installs them)
in a temporary directory, as the `postgres` system user because initdb refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager

import sqlalchemy

SHARED_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
FORCE_PRIVATE_ENV = "KLINECAST_TEST_PRIVATE_PG"
#: A server the environment provides (the `postgres` service of .gitlab-ci.yml's test job).
GIVEN_ENV = "KLINECAST_TEST_POSTGRES"


def reachable(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        return True
    except sqlalchemy.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def postgres_url(port: int):
    """Yields a URL to a database of this session's own, on the first server that answers."""
    with server_url(port) as url, own_database(url) as own:
        yield own


@contextmanager
def own_database(url: str):
    """Yields a URL to a new database on the server of `url`; drops it afterwards."""
    name = f"klinecast_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'create database "{name}"'))
        yield sqlalchemy.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@contextmanager
def server_url(port: int):
    """Yields a URL to a database named `test` on a server that answers."""
    given = os.environ.get(GIVEN_ENV)
    if given:
        if not reachable(given):
            raise RuntimeError(f"${GIVEN_ENV} names a PostgreSQL that does not answer: {given}")
        yield given
        return
    if not os.environ.get(FORCE_PRIVATE_ENV) and reachable(SHARED_URL):
        yield SHARED_URL
        return
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        raise RuntimeError(
            "no PostgreSQL reachable at 127.0.0.1:5432 and no Debian postgresql binaries to "
            "start one; run `make setup`"
        )
    bin_dir = os.path.dirname(binaries[-1])
    root = tempfile.mkdtemp(prefix="klinecast-pg-")
    shutil.chown(root, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = os.path.join(root, "data")
    subprocess.run(
        [*as_postgres, f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            f"{bin_dir}/pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(root, "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        admin = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while not reachable(admin):
            if time.monotonic() > deadline:
                raise RuntimeError("the private PostgreSQL did not become ready")
            time.sleep(0.2)
        engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("create database test"))
        engine.dispose()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/test"
    finally:
        subprocess.run(
            [*as_postgres, f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
