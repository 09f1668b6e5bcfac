"""The trading ledger (SQLAlchemy 2): SQLite by default, PostgreSQL in production.

Every row a cycle writes is committed before the next step runs: the order intent before the
order is sent, the fill right after. The schema is created and migrated here (table
`schema_version`); the view `prediction_outcomes` puts predictions and outcomes side by side
for dashboards, as the seed tutorials did.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from klinecast.errors import KlinecastError
from klinecast.redaction import redact

metadata = sa.MetaData()
UTC = sa.DateTime(timezone=True)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("hour", UTC, primary_key=True),  # open time of the newest closed candle
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("prob_up", sa.Float),
    sa.Column("target", sa.Integer),  # -1 short, 0 flat, 1 long
    sa.Column("model_version", sa.String(200)),
    sa.Column("feature_time", sa.String(40)),
    sa.Column("close", sa.Float),
    sa.Column("status", sa.String(20), nullable=False),  # traded | no_trade | halted
    sa.Column("reason", sa.Text),
    sa.Column("created_at", UTC, nullable=False),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("client_order_id", sa.String(36), primary_key=True),
    sa.Column("hour", UTC, nullable=False),
    sa.Column("leg", sa.String(10), nullable=False),  # close | open
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # intent | filled
    sa.Column("fill_price", sa.Float),
    sa.Column("fee", sa.Float),
    sa.Column("exchange_order_id", sa.String(40)),
    sa.Column("created_at", UTC, nullable=False),
    sa.Column("updated_at", UTC, nullable=False),
)
positions = sa.Table(
    "positions",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("hour", UTC, nullable=False),
)
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("hour", UTC, primary_key=True),  # the predicted hour's feature time t
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("next_close", sa.Float, nullable=False),
    sa.Column("actual_up", sa.Boolean, nullable=False),
    sa.Column("target", sa.Integer, nullable=False),
    sa.Column("correct", sa.Boolean),  # null while flat
    sa.Column("strategy_return", sa.Float, nullable=False),
    sa.Column("market_return", sa.Float, nullable=False),
)
equity = sa.Table(
    "equity",
    metadata,
    sa.Column("hour", UTC, primary_key=True),
    sa.Column("equity", sa.Float, nullable=False),  # growth of 1 after fees
    sa.Column("buy_and_hold", sa.Float, nullable=False),
)
state = sa.Table(
    "state",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTC, nullable=False),
)
schema_version = sa.Table(
    "schema_version", metadata, sa.Column("version", sa.Integer, primary_key=True)
)

VIEW = """CREATE VIEW prediction_outcomes AS
SELECT p.hour, p.symbol, p.prob_up, p.target, p.model_version, p.status,
       o.actual_up, o.correct, o.strategy_return, o.market_return
FROM predictions p LEFT JOIN outcomes o ON o.hour = p.hour"""


def _v1(connection) -> None:
    metadata.create_all(connection)
    connection.execute(sa.text(VIEW))


#: Migrations in order; schema version N has run MIGRATIONS[:N]. Append, never edit.
MIGRATIONS = (_v1,)


class LedgerError(KlinecastError):
    """The ledger database cannot be reached or written; nothing is sent to the exchange."""


@dataclass(frozen=True)
class Order:
    client_order_id: str
    hour: dt.datetime
    leg: str
    symbol: str
    side: str
    qty: float
    status: str = "intent"
    fill_price: float | None = None
    fee: float | None = None
    exchange_order_id: str | None = None


class Ledger:
    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # a malformed URL or a missing driver
            raise LedgerError(f"ledger {redact(url)}: {exc}") from None

    def migrate(self) -> int:
        """Creates or upgrades the schema; returns its version. Also the reachability check."""
        with self._begin() as connection:
            current = 0
            if sa.inspect(connection).has_table("schema_version"):
                current = connection.execute(sa.select(sa.func.max(schema_version.c.version)))
                current = current.scalar() or 0
            for version in range(current + 1, len(MIGRATIONS) + 1):
                MIGRATIONS[version - 1](connection)
                connection.execute(schema_version.insert().values(version=version))
        return len(MIGRATIONS)

    def _begin(self):
        return _Guarded(self)

    # predictions
    def prediction(self, hour: dt.datetime) -> dict | None:
        with self._begin() as c:
            row = c.execute(sa.select(predictions).where(predictions.c.hour == hour)).first()
        return None if row is None else _row(row)

    def record_prediction(self, hour: dt.datetime, **values) -> None:
        row = {"hour": hour, "created_at": _now(), **values}
        with self._begin() as c:
            c.execute(predictions.delete().where(predictions.c.hour == hour))
            c.execute(predictions.insert().values(**row))

    def traded_predictions(self, *, before: dt.datetime | None = None) -> list[dict]:
        query = sa.select(predictions).where(predictions.c.status == "traded")
        if before is not None:
            query = query.where(predictions.c.hour < before)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query.order_by(predictions.c.hour))]

    # orders and positions
    def order(self, client_order_id: str) -> Order | None:
        query = sa.select(orders).where(orders.c.client_order_id == client_order_id)
        with self._begin() as c:
            row = c.execute(query).first()
        if row is None:
            return None
        values = {k: v for k, v in row._mapping.items() if k not in ("created_at", "updated_at")}
        return Order(**values)

    def record_intent(self, order: Order) -> None:
        now = _now()
        with self._begin() as c:
            c.execute(orders.insert().values(**vars(order), created_at=now, updated_at=now))

    def record_fill(self, order: Order, *, position_after: float) -> None:
        """The fill and the new position, in one transaction."""
        with self._begin() as c:
            c.execute(
                orders.update()
                .where(orders.c.client_order_id == order.client_order_id)
                .values(
                    status="filled",
                    fill_price=order.fill_price,
                    fee=order.fee,
                    exchange_order_id=order.exchange_order_id,
                    updated_at=_now(),
                )
            )
            c.execute(positions.delete().where(positions.c.symbol == order.symbol))
            c.execute(
                positions.insert().values(symbol=order.symbol, qty=position_after, hour=order.hour)
            )

    def position(self, symbol: str) -> float:
        with self._begin() as c:
            row = c.execute(sa.select(positions.c.qty).where(positions.c.symbol == symbol)).first()
        return 0.0 if row is None else float(row[0])

    def orders(self) -> list[Order]:
        with self._begin() as c:
            rows = c.execute(sa.select(orders).order_by(orders.c.created_at)).all()
        drop = ("created_at", "updated_at")
        return [Order(**{k: v for k, v in r._mapping.items() if k not in drop}) for r in rows]

    # outcomes and equity
    def record_outcome(self, row: dict, *, equity_row: dict) -> None:
        with self._begin() as c:
            c.execute(outcomes.insert().values(**row))
            c.execute(equity.insert().values(**equity_row))

    def outcome_hours(self) -> set:
        with self._begin() as c:
            return {_utc(r[0]) for r in c.execute(sa.select(outcomes.c.hour))}

    def outcomes(self) -> list[dict]:
        with self._begin() as c:
            rows = c.execute(sa.select(outcomes).order_by(outcomes.c.hour))
            return [_row(r) for r in rows]

    def last_equity(self) -> tuple[float, float]:
        query = sa.select(equity.c.equity, equity.c.buy_and_hold).order_by(equity.c.hour.desc())
        with self._begin() as c:
            row = c.execute(query.limit(1)).first()
        return (1.0, 1.0) if row is None else (float(row[0]), float(row[1]))

    # state: the kill switch and the retrain cooldown
    def get_state(self, key: str) -> str | None:
        with self._begin() as c:
            row = c.execute(sa.select(state.c.value).where(state.c.key == key)).first()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str | None) -> None:
        with self._begin() as c:
            c.execute(state.delete().where(state.c.key == key))
            if value is not None:
                c.execute(state.insert().values(key=key, value=value, updated_at=_now()))


class _Guarded:
    """engine.begin() whose connection and SQL errors become LedgerError with the URL redacted."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.context = None

    def __enter__(self):
        try:
            self.context = self.ledger.engine.begin()
            return self.context.__enter__()
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(_describe(self.ledger.url, exc)) from None

    def __exit__(self, kind, error, trace):
        try:
            self.context.__exit__(kind, error, trace)  # commits, or rolls back on error
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(_describe(self.ledger.url, exc)) from None
        if isinstance(error, sa.exc.SQLAlchemyError):
            raise LedgerError(_describe(self.ledger.url, error)) from None
        return False


def _describe(url: str, exc: Exception) -> str:
    first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return f"ledger {redact(url)} is unavailable: {first}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _row(row) -> dict:
    values = dict(row._mapping)
    values["hour"] = _utc(values["hour"])
    return values


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every hour in the ledger is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
