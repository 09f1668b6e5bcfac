"""Creating and upgrading the ledger's schema with Alembic, one process at a time.

Two processes that meet a fresh database both try to create the tables; here the second waits
on a lock (`locks.exclusive`) and then finds them made. A ledger made by the migration table
klinecast had before Alembic (`schema_version`, its version 1) is stamped as revision 0001 and
upgraded from there, its rows kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

from klinecast.trader.locks import exclusive

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK = "klinecast-ledger-schema"
#: Alembic's bookkeeping table, named for the ledger: Optuna keeps its own `alembic_version`,
#: and the study and the ledger may share one PostgreSQL database.
VERSION_TABLE = "klinecast_ledger_version"
#: How long a process waits for another that is creating or upgrading the schema.
WAIT_S = 120.0


def script():
    quiet_alembic()
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config, ScriptDirectory.from_config(config)


def head() -> str:
    return script()[1].get_current_head()


def quiet_alembic() -> None:
    """Alembic logs a line per plugin at import and per step at every run: not for operators."""
    logging.getLogger("alembic").setLevel(logging.WARNING)


def current(connection: sa.Connection) -> str | None:
    quiet_alembic()
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: sa.Engine, destination: str = "head") -> str:
    """Brings the schema to the newest revision (or destination, for tests that make an older
    ledger); returns it. Idempotent.

    Raises:
        LockBusy: another process held the schema lock for WAIT_S.
        sqlalchemy.exc.SQLAlchemyError: the database refused (the caller reports it).
    """
    quiet_alembic()
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext

    config, scripts = script()
    with exclusive(engine, LOCK, wait_s=WAIT_S), engine.begin() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        if "schema_version" in tables and VERSION_TABLE not in tables:
            MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).stamp(
                scripts, "0001"
            )
        wanted = scripts.get_current_head() if destination == "head" else destination
        if current(connection) == wanted:
            return wanted

        def to_head(revision, context):
            return scripts._upgrade_revs(destination, revision)

        with EnvironmentContext(config, scripts, fn=to_head, destination_rev=destination) as env:
            env.configure(
                connection=connection, target_metadata=None, version_table=VERSION_TABLE
            )
            env.run_migrations()
    return wanted
