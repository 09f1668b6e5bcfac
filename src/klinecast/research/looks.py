"""How many times each out-of-sample span has been evaluated.

Every evaluation of the same months is one more chance to tune to them, by hand or by
rerunning until the verdict suits. The count lives beside the study, in the Optuna storage
(table `klinecast_span_looks`), and the report shows it beside the verdict.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from klinecast.config import Span
from klinecast.errors import KlinecastError
from klinecast.redaction import redact

metadata = sa.MetaData()
span_looks = sa.Table(
    "klinecast_span_looks",
    metadata,
    sa.Column("span", sa.String(40), primary_key=True),
    sa.Column("looks", sa.Integer, nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
)


def record(storage_url: str, span: Span, symbol: str = "BTCUSDT") -> int:
    """Counts one more evaluation of the span for the symbol (each symbol's hours are its
    own data); returns how many there have been.

    Raises:
        KlinecastError: the storage cannot be reached or written (the URL's password hidden).
    """
    key = str(span) if symbol == "BTCUSDT" else f"{span} {symbol}"  # BTCUSDT's: as before symbols
    try:
        engine = sa.create_engine(storage_url)
        with engine.begin() as connection:
            metadata.create_all(connection, checkfirst=True)
            row = connection.execute(
                sa.select(span_looks.c.looks).where(span_looks.c.span == key)
            ).first()
            looks = 1 if row is None else int(row[0]) + 1
            connection.execute(span_looks.delete().where(span_looks.c.span == key))
            connection.execute(
                span_looks.insert().values(span=key, looks=looks, last_at=dt.datetime.now(dt.UTC))
            )
        engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise KlinecastError(
            f"cannot count the evaluations of {key} in {redact(storage_url)}: {first}"
        ) from None
    return looks
