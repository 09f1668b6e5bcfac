"""How many times each out-of-sample span has been evaluated.

Every evaluation of the same months is one more chance to tune to them, by hand or by
rerunning until the verdict suits. The count lives beside the study, in the Optuna storage
(table `klinecast_span_looks`), and the report shows it beside the verdict.

Several evaluations may count at once (a pipeline's symbol branches share one storage), so a
look is one atomic upsert, the table is created only if it is not there, and a race lost to
another writer (`DATABASE_RACE_SIGNS`) is tried again.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from klinecast.config import Span
from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.retries import (
    DATABASE_RACE_SIGNS,
    GaveUp,
    Retryable,
    RetrySettings,
    call_with_retries,
)

log = logging.getLogger(__name__)
metadata = sa.MetaData()
span_looks = sa.Table(
    "klinecast_span_looks",
    metadata,
    sa.Column("span", sa.String(40), primary_key=True),
    sa.Column("looks", sa.Integer, nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
)
#: Races only: 6 attempts, 0.1 s apart and doubling (a few seconds in all).
RACE_RETRY = RetrySettings(attempts=6, backoff_s=0.1)
_UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def record(storage_url: str, span: Span, symbol: str = "BTCUSDT") -> int:
    """Counts one more evaluation of the span for the symbol (each symbol's hours are its
    own data); returns how many there have been.

    Raises:
        KlinecastError: the storage cannot be reached or written (the URL's password hidden).
    """
    key = str(span) if symbol == "BTCUSDT" else f"{span} {symbol}"  # BTCUSDT's: as before symbols
    where = f"cannot count the evaluations of {key} in {redact(storage_url)}"
    try:
        engine = sa.create_engine(storage_url)
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise KlinecastError(f"{where}: {exc}") from None

    def attempt() -> int:
        try:
            with engine.begin() as connection:
                return _count_one_more(connection, key)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            if any(sign in reason for sign in DATABASE_RACE_SIGNS):
                raise Retryable(reason) from None
            raise KlinecastError(f"{where}: {reason}") from None

    try:
        return call_with_retries(attempt, settings=RACE_RETRY, what=where, log=log)
    except GaveUp as exc:
        raise KlinecastError(f"{where}: {exc.reason}") from None
    finally:
        engine.dispose()


def _count_one_more(connection: sa.Connection, key: str) -> int:
    """One upsert (a write first, so SQLite never has to upgrade a read lock), then the count."""
    connection.execute(sa.schema.CreateTable(span_looks, if_not_exists=True))
    insert = _UPSERTS.get(connection.dialect.name)
    if insert is None:
        raise KlinecastError(
            f"the look count needs SQLite or PostgreSQL, not {connection.dialect.name}"
        )
    now = dt.datetime.now(dt.UTC)
    statement = insert(span_looks).values(span=key, looks=1, last_at=now)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[span_looks.c.span],
            set_={"looks": span_looks.c.looks + 1, "last_at": now},
        )
    )
    return int(
        connection.execute(sa.select(span_looks.c.looks).where(span_looks.c.span == key)).scalar()
    )
