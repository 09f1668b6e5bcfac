"""The trading ledger (SQLAlchemy 2): SQLite by default, PostgreSQL in production.

Every row a cycle writes is committed before the next step runs: the order intent before the
order is sent, the fill right after. The schema is Alembic's (`klinecast.trader.schema`); the
view `prediction_outcomes` puts predictions and outcomes side by side for dashboards. Besides
what was predicted, ordered and earned, the ledger keeps the halts (a kill switch, or a
difference with the exchange) with who resumed them and what was decided, and every
reconciliation with the exchange.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import sqlalchemy as sa

from klinecast.errors import KlinecastError
from klinecast.redaction import redact
from klinecast.trader import locks, schema
from klinecast.trader.tables import (
    equity,
    halts,
    orders,
    outcomes,
    positions,
    predictions,
    reconciliations,
    state,
)

#: An order's statuses whose fate the exchange has not told yet: every cycle looks them up.
UNRESOLVED = ("intent",)
#: The book as a whole, where a halt is not a symbol's.
BOOK = "*"


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
    error_code: int | None = None
    error_message: str | None = None
    may_exist: bool | None = None
    #: a fee the exchange took in the base asset (Binance's default on a BUY): the holding
    #: grows by the quantity less this (not stored: it moves the position once, at the fill)
    base_fee: float = 0.0

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "BUY" else -self.qty

    @property
    def holding_change(self) -> float:
        """What the fill changes in the holding of the base asset."""
        return self.signed_qty - self.base_fee


ORDER_FIELDS = tuple(f.name for f in fields(Order) if f.name != "base_fee")


@dataclass(frozen=True)
class Halt:
    id: int
    symbol: str
    kind: str  # kill_switch | reconcile
    reason: str
    halted_at: dt.datetime
    equity_at_halt: float | None = None
    resumed_at: dt.datetime | None = None
    resumed_by: str | None = None
    decision: str | None = None
    equity_base: float | None = None


class Ledger:
    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # a malformed URL or a missing driver
            raise LedgerError(f"ledger {redact(url)}: {exc}") from None

    def migrate(self) -> str:
        """Creates or upgrades the schema (one process at a time); returns its revision. Also
        the reachability check."""
        try:
            return schema.upgrade(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(_describe(self.url, exc)) from None

    @contextmanager
    def exclusive(self, name: str, *, wait_s: float) -> Iterator[None]:
        """A lock across processes in this database (see klinecast.trader.locks).

        Raises:
            locks.LockBusy: held by another process for wait_s.
            LedgerError: the database is unavailable.
        """
        try:
            with locks.exclusive(self.engine, name, wait_s=wait_s):
                yield
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerError(_describe(self.url, exc)) from None

    def _begin(self):
        return _Guarded(self)

    # predictions
    def prediction(self, hour: dt.datetime, symbol: str) -> dict | None:
        query = sa.select(predictions).where(
            predictions.c.hour == hour, predictions.c.symbol == symbol
        )
        with self._begin() as c:
            row = c.execute(query).first()
        return None if row is None else _row(row)

    def record_prediction(self, hour: dt.datetime, *, symbol: str, **values) -> None:
        row = {"hour": hour, "symbol": symbol, "created_at": _now(), **values}
        with self._begin() as c:
            c.execute(
                predictions.delete().where(
                    predictions.c.hour == hour, predictions.c.symbol == symbol
                )
            )
            c.execute(predictions.insert().values(**row))

    def traded_predictions(
        self, symbol: str | None = None, *, before: dt.datetime | None = None
    ) -> list[dict]:
        """The traded hours of the symbol (of every symbol: None), oldest first."""
        query = sa.select(predictions).where(predictions.c.status == "traded")
        if symbol is not None:
            query = query.where(predictions.c.symbol == symbol)
        if before is not None:
            query = query.where(predictions.c.hour < before)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query.order_by(predictions.c.hour))]

    # orders and positions
    def order(self, client_order_id: str) -> Order | None:
        query = sa.select(orders).where(orders.c.client_order_id == client_order_id)
        with self._begin() as c:
            row = c.execute(query).first()
        return None if row is None else _order(row)

    def orders(self) -> list[Order]:
        with self._begin() as c:
            rows = c.execute(sa.select(orders).order_by(orders.c.created_at)).all()
        return [_order(r) for r in rows]

    def unresolved_orders(self) -> list[Order]:
        """Every order whose fate the exchange has not told yet, of any hour, oldest first."""
        query = sa.select(orders).where(orders.c.status.in_(UNRESOLVED))
        with self._begin() as c:
            return [_order(r) for r in c.execute(query.order_by(orders.c.created_at))]

    def record_intent(self, order: Order) -> None:
        """The order about to be sent; an earlier attempt of it that never reached the
        exchange (rejected, absent) becomes an intent again."""
        now = _now()
        values = {k: getattr(order, k) for k in ORDER_FIELDS} | {"status": "intent"}
        with self._begin() as c:
            known = c.execute(
                sa.select(orders.c.status).where(orders.c.client_order_id == order.client_order_id)
            ).first()
            if known is None:
                c.execute(orders.insert().values(**values, created_at=now, updated_at=now))
            else:
                c.execute(
                    orders.update()
                    .where(orders.c.client_order_id == order.client_order_id)
                    .values(status="intent", updated_at=now)
                )

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
            _set_position(c, order.symbol, position_after, order.hour)

    def record_failure(
        self, order: Order, *, status: str, code: int | None, message: str, may_exist: bool
    ) -> None:
        """What failed about an order: the exchange refused it (rejected), has no such order
        (absent), or answered in a way that leaves it unknown (intent, may_exist)."""
        with self._begin() as c:
            c.execute(
                orders.update()
                .where(orders.c.client_order_id == order.client_order_id)
                .values(
                    status=status,
                    error_code=code,
                    error_message=message[:1000],
                    may_exist=may_exist,
                    updated_at=_now(),
                )
            )

    def position(self, symbol: str) -> float:
        with self._begin() as c:
            row = c.execute(sa.select(positions.c.qty).where(positions.c.symbol == symbol)).first()
        return 0.0 if row is None else float(row[0])

    def set_position(self, symbol: str, qty: float, *, hour: dt.datetime) -> None:
        with self._begin() as c:
            _set_position(c, symbol, qty, hour)

    # outcomes and equity
    def record_outcome(self, row: dict, *, equity_row: dict) -> None:
        """A settled hour of row["symbol"] and that symbol's equity after it."""
        with self._begin() as c:
            c.execute(outcomes.insert().values(**row))
            c.execute(equity.insert().values(symbol=row["symbol"], **equity_row))

    def outcome_hours(self, symbol: str) -> set:
        query = sa.select(outcomes.c.hour).where(outcomes.c.symbol == symbol)
        with self._begin() as c:
            return {_utc(r[0]) for r in c.execute(query)}

    def outcomes(self, symbol: str | None = None) -> list[dict]:
        """The settled hours of the symbol (of every symbol: None), oldest first."""
        query = sa.select(outcomes).order_by(outcomes.c.hour, outcomes.c.symbol)
        if symbol is not None:
            query = query.where(outcomes.c.symbol == symbol)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query)]

    def last_equity(self, symbol: str) -> tuple[float, float]:
        """The symbol's equity and its buy-and-hold's after its last settled hour (1, 1)."""
        query = (
            sa.select(equity.c.equity, equity.c.buy_and_hold)
            .where(equity.c.symbol == symbol)
            .order_by(equity.c.hour.desc())
        )
        with self._begin() as c:
            row = c.execute(query.limit(1)).first()
        return (1.0, 1.0) if row is None else (float(row[0]), float(row[1]))

    # halts: the kill switch and differences with the exchange
    def open_halt(self, symbol: str) -> Halt | None:
        """The halt that holds for the symbol, if any: its own (a reconcile difference first,
        then its kill switch), else the whole book's."""
        return self.own_halt(symbol) or (self.own_halt(BOOK) if symbol != BOOK else None)

    def own_halt(self, symbol: str) -> Halt | None:
        """The symbol's own open halt (BOOK: the book's), a reconcile difference first."""
        query = (
            sa.select(halts)
            .where(halts.c.symbol == symbol, halts.c.resumed_at.is_(None))
            .order_by((halts.c.kind == "reconcile").desc(), halts.c.id)
        )
        with self._begin() as c:
            row = c.execute(query).first()
        return None if row is None else _halt(row)

    def halts(self) -> list[Halt]:
        with self._begin() as c:
            return [_halt(r) for r in c.execute(sa.select(halts).order_by(halts.c.id))]

    def halt(self, symbol: str, *, kind: str, reason: str, equity_now: float | None = None) -> Halt:
        with self._begin() as c:
            c.execute(
                halts.insert().values(
                    symbol=symbol, kind=kind, reason=reason, halted_at=_now(),
                    equity_at_halt=equity_now,
                )  # fmt: skip
            )
        return self.open_halt(symbol)

    def resume(
        self, halt: Halt, *, by: str, decision: str, equity_base: float | None = None
    ) -> Halt:
        """Closes a halt with who decided, what and when; a kill switch's equity_base is what
        later cycles measure the cumulative return from."""
        with self._begin() as c:
            c.execute(
                halts.update()
                .where(halts.c.id == halt.id)
                .values(
                    resumed_at=_now(), resumed_by=by[:100], decision=decision,
                    equity_base=equity_base,
                )  # fmt: skip
            )
            row = c.execute(sa.select(halts).where(halts.c.id == halt.id)).first()
        return _halt(row)

    def equity_base(self, symbol: str) -> float:
        """The equity that the symbol's (or the book's: BOOK) kill switch measures from: 1, or
        its last resume's."""
        query = (
            sa.select(halts.c.equity_base)
            .where(halts.c.equity_base.is_not(None), halts.c.symbol == symbol)
            .order_by(halts.c.id.desc())
        )
        with self._begin() as c:
            row = c.execute(query.limit(1)).first()
        return 1.0 if row is None else float(row[0])

    # reconciliations
    def record_reconciliation(self, **values) -> None:
        with self._begin() as c:
            c.execute(reconciliations.insert().values(checked_at=_now(), **values))

    def latest_reconciliation(self, symbol: str) -> dict | None:
        query = (
            sa.select(reconciliations)
            .where(reconciliations.c.symbol == symbol)
            .order_by(reconciliations.c.id.desc())
        )
        with self._begin() as c:
            row = c.execute(query.limit(1)).first()
        return None if row is None else _row(row)

    # state: the retrain cooldown, an exchange's baseline balance
    def get_state(self, key: str) -> str | None:
        with self._begin() as c:
            row = c.execute(sa.select(state.c.value).where(state.c.key == key)).first()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str | None) -> None:
        with self._begin() as c:
            c.execute(state.delete().where(state.c.key == key))
            if value is not None:
                c.execute(state.insert().values(key=key, value=value, updated_at=_now()))


def _set_position(connection, symbol: str, qty: float, hour: dt.datetime) -> None:
    connection.execute(positions.delete().where(positions.c.symbol == symbol))
    connection.execute(positions.insert().values(symbol=symbol, qty=qty, hour=hour))


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
    for key in ("hour", "checked_at", "halted_at", "resumed_at"):
        if values.get(key) is not None:
            values[key] = _utc(values[key])
    return values


def _order(row) -> Order:
    values = _row(row)
    return Order(**{k: values[k] for k in ORDER_FIELDS})


def _halt(row) -> Halt:
    values = _row(row)
    return Halt(**{f.name: values[f.name] for f in fields(Halt)})


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time in the ledger is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
