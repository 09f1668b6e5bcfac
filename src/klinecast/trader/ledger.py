"""The trading ledger (SQLAlchemy 2): SQLite by default, PostgreSQL in production.

Every row a cycle writes is committed before the next step runs: the order intent before the
order is sent, each state the exchange reports right after. The schema is Alembic's
(`klinecast.trader.schema`); the view `prediction_outcomes` puts predictions and outcomes side
by side for dashboards. Besides what was predicted, ordered and earned, the ledger keeps the
halts (a kill switch, or a difference with the exchange) with who resumed them and what was
decided, every reconciliation with the exchange, and every failure of a cycle.

An hour's record is never rewritten: a later cycle of the hour adds an attempt that names the
one it corrects (`record_prediction`), and the newest attempt is the hour's record. The position
moves only by what executed at the exchange, net of a commission taken in the base asset.
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
    failures,
    halts,
    orders,
    outcomes,
    positions,
    predictions,
    reconciliations,
    shadow_calls,
    shadow_outcomes,
    state,
)

#: An order's statuses whose end the exchange has not told yet: every cycle looks them up
#: (intent: its fate is unknown; open: NEW or PARTIALLY_FILLED at the exchange).
UNRESOLVED = ("intent", "open")
#: What an hour's record says; a later attempt that says the same adds nothing.
SAID = ("status", "reason", "target", "stage", "error_code")
#: Statuses of an order the exchange has booked (its client order id is spent).
BOOKED = ("open", "filled", "canceled")
#: The book as a whole, where a halt is not a symbol's.
BOOK = "*"


class LedgerError(KlinecastError):
    """The ledger database cannot be reached or written; nothing is sent to the exchange."""


@dataclass(frozen=True)
class Order:
    """An order as the ledger (or the exchange's latest answer) knows it."""

    client_order_id: str
    hour: dt.datetime
    leg: str
    symbol: str
    side: str
    qty: float
    status: str = "intent"  # intent | open | filled | canceled | rejected | absent
    fill_price: float | None = None
    fee: float | None = None
    exchange_order_id: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    may_exist: bool | None = None
    exchange_status: str | None = None
    executed_qty: float = 0.0
    quote_qty: float | None = None
    #: the commission taken in the base asset (Binance's default on a BUY): the holding grows
    #: by the executed quantity less this
    base_fee: float = 0.0
    created_at: dt.datetime | None = None  # when the intent was first recorded (read only)
    updated_at: dt.datetime | None = None  # when its row last changed (read only)

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def holding_change(self) -> float:
        """What has executed of it changed in the holding of the base asset."""
        return self.sign * self.executed_qty - self.base_fee

    @property
    def unexecuted(self) -> float:
        """The signed quantity still to execute while it is open (exposure, for the cap)."""
        return self.sign * max(self.qty - self.executed_qty, 0.0) if self.status in UNRESOLVED else 0.0


ORDER_FIELDS = tuple(f.name for f in fields(Order) if f.name not in ("created_at", "updated_at"))
#: What an answer of the exchange changes in an order's row.
STATE_FIELDS = ("status", "exchange_status", "executed_qty", "quote_qty", "fill_price", "fee",
                "base_fee", "exchange_order_id")  # fmt: skip


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

    # predictions: an hour's attempts, the newest its record
    def prediction(self, hour: dt.datetime, symbol: str) -> dict | None:
        """The hour's record: its newest attempt."""
        query = (
            sa.select(predictions)
            .where(predictions.c.hour == hour, predictions.c.symbol == symbol)
            .order_by(predictions.c.attempt.desc())
        )
        with self._begin() as c:
            row = c.execute(query.limit(1)).first()
        return None if row is None else _row(row)

    def record_prediction(self, hour: dt.datetime, *, symbol: str, **values) -> dict:
        """The hour's record, appended: the hour's first attempt, or the next one, naming the
        attempt it corrects. A record that says what the newest already says adds nothing.

        Raises:
            LedgerError: the hour is traded already (a traded hour is never corrected).
        """
        with self._begin() as c:
            newest = c.execute(
                sa.select(predictions)
                .where(predictions.c.hour == hour, predictions.c.symbol == symbol)
                .order_by(predictions.c.attempt.desc())
                .limit(1)
            ).first()
            if newest is not None:
                newest = _row(newest)
                if newest["status"] == "traded":
                    raise LedgerError(f"{symbol} {hour:%Y-%m-%d %H:%M} is traded; its record stays")
                said = {k: values[k] if k in values else None for k in SAID}
                if all(newest[k] == v for k, v in said.items()):
                    return newest
            attempt = 1 if newest is None else newest["attempt"] + 1
            row = {
                "hour": hour, "symbol": symbol, "attempt": attempt, "created_at": _now(),
                "corrects": None if newest is None else newest["attempt"], **values,
            }  # fmt: skip
            c.execute(predictions.insert().values(**row))
        return row

    def hour_records(self, symbol: str, *, before: dt.datetime | None = None) -> list[dict]:
        """Each hour's record (its newest attempt) of the symbol, oldest first."""
        query = sa.select(predictions).where(predictions.c.symbol == symbol)
        if before is not None:
            query = query.where(predictions.c.hour < before)
        with self._begin() as c:
            rows = c.execute(query.order_by(predictions.c.hour, predictions.c.attempt)).all()
        newest = {}
        for row in rows:
            newest[row.hour] = row  # later attempts replace earlier ones
        return [_row(r) for r in newest.values()]

    def traded_predictions(
        self, symbol: str | None = None, *, before: dt.datetime | None = None
    ) -> list[dict]:
        """The traded hours of the symbol (of every symbol: None), oldest first."""
        symbols = [symbol] if symbol is not None else self.symbols()
        traded = [
            r for s in symbols for r in self.hour_records(s, before=before) if r["status"] == "traded"
        ]
        return sorted(traded, key=lambda r: (r["hour"], r["symbol"]))

    def held_hours(self, symbol: str, *, before: dt.datetime | None = None) -> list[dict]:
        """The hours whose record says what was held after them (traded, and the no-trade,
        failed and halted hours that held a position), oldest first: what the equity counts."""
        return [r for r in self.hour_records(symbol, before=before) if r["target"] is not None]

    def newest_hour(self, symbol: str) -> dt.datetime | None:
        """The newest hour on record for the symbol: a cycle of an older hour is refused."""
        query = sa.select(sa.func.max(predictions.c.hour)).where(predictions.c.symbol == symbol)
        with self._begin() as c:
            newest = c.execute(query).scalar()
        return None if newest is None else _utc(newest)

    def symbols(self) -> list[str]:
        with self._begin() as c:
            return sorted(r[0] for r in c.execute(sa.select(predictions.c.symbol).distinct()))

    # failures
    def record_cycle_failure(
        self, *, symbol: str, hour: dt.datetime, stage: str, code: int | None, message: str
    ) -> None:
        with self._begin() as c:
            c.execute(
                failures.insert().values(
                    at=_now(), symbol=symbol, hour=hour, stage=stage, code=code,
                    message=message[:2000],
                )  # fmt: skip
            )

    def cycle_failures(self, symbol: str | None = None) -> list[dict]:
        """Every failure on record (of the symbol), oldest first."""
        query = sa.select(failures).order_by(failures.c.id)
        if symbol is not None:
            query = query.where(failures.c.symbol == symbol)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query)]

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

    def unresolved_orders(self, symbol: str | None = None) -> list[Order]:
        """Every order whose end the exchange has not told yet (of the symbol), of any hour,
        oldest first."""
        query = sa.select(orders).where(orders.c.status.in_(UNRESOLVED))
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
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
            elif known.status in BOOKED:
                raise LedgerError(f"{order.client_order_id} was booked already; not sent again")
            else:
                c.execute(
                    orders.update()
                    .where(orders.c.client_order_id == order.client_order_id)
                    .values(status="intent", updated_at=now)
                )

    def record_order(self, order: Order) -> float:
        """The order's state as the exchange reports it, and the position moved by what
        executed since the last report (net of a commission in the base asset), in one
        transaction. Returns the position after."""
        with self._begin() as c:
            known = c.execute(
                sa.select(orders).where(orders.c.client_order_id == order.client_order_id)
            ).first()
            before = _order(known)
            change = order.holding_change - before.holding_change
            c.execute(
                orders.update()
                .where(orders.c.client_order_id == order.client_order_id)
                .values(**{k: getattr(order, k) for k in STATE_FIELDS}, updated_at=_now())
            )
            qty, dust = _holding(c, order.symbol)
            position = round(qty + change, 12)
            if change:
                _set_position(c, order.symbol, position, dust, order.hour)
        return position

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
        return self.holding(symbol)[0]

    def holding(self, symbol: str) -> tuple[float, float]:
        """The symbol's position and its dust (base asset)."""
        with self._begin() as c:
            return _holding(c, symbol)

    def set_position(self, symbol: str, qty: float, *, hour: dt.datetime, dust: float = 0.0) -> None:
        with self._begin() as c:
            _set_position(c, symbol, qty, dust, hour)

    def move_to_dust(self, symbol: str, *, hour: dt.datetime) -> float:
        """The position becomes dust (it is below the smallest order the filters allow);
        returns the dust after."""
        with self._begin() as c:
            qty, dust = _holding(c, symbol)
            _set_position(c, symbol, 0.0, round(dust + qty, 12), hour)
        return round(dust + qty, 12)

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

    # the shadow book: the challenger's calls, never traded, and their paper outcomes
    def record_shadow_call(self, row: dict) -> None:
        """The challenger's call of row["hour"] (kept: a rerun of the hour adds nothing)."""
        with self._begin() as c:
            c.execute(shadow_calls.insert().values(created_at=_now(), **row))

    def shadow_calls(self, symbol: str, *, before: dt.datetime | None = None) -> list[dict]:
        """The symbol's shadow calls, oldest first."""
        query = sa.select(shadow_calls).where(shadow_calls.c.symbol == symbol)
        if before is not None:
            query = query.where(shadow_calls.c.hour < before)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query.order_by(shadow_calls.c.hour))]

    def record_shadow_outcome(self, row: dict) -> None:
        with self._begin() as c:
            c.execute(shadow_outcomes.insert().values(**row))

    def shadow_outcomes(self, symbol: str | None = None) -> list[dict]:
        """The settled shadow hours of the symbol (of every symbol: None), oldest first."""
        query = sa.select(shadow_outcomes).order_by(shadow_outcomes.c.hour, shadow_outcomes.c.symbol)
        if symbol is not None:
            query = query.where(shadow_outcomes.c.symbol == symbol)
        with self._begin() as c:
            return [_row(r) for r in c.execute(query)]

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
        """The symbol's last reconciliation with the exchange, if any."""
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


def _holding(connection, symbol: str) -> tuple[float, float]:
    query = sa.select(positions.c.qty, positions.c.dust).where(positions.c.symbol == symbol)
    row = connection.execute(query).first()
    return (0.0, 0.0) if row is None else (float(row[0]), float(row[1]))


def _set_position(connection, symbol: str, qty: float, dust: float, hour: dt.datetime) -> None:
    connection.execute(positions.delete().where(positions.c.symbol == symbol))
    connection.execute(positions.insert().values(symbol=symbol, qty=qty, dust=dust, hour=hour))


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
    for key in ("hour", "checked_at", "halted_at", "resumed_at", "created_at", "updated_at", "at"):
        if values.get(key) is not None:
            values[key] = _utc(values[key])
    return values


def _order(row) -> Order:
    values = _row(row)
    return Order(
        **{k: values[k] for k in ORDER_FIELDS},
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def _halt(row) -> Halt:
    values = _row(row)
    return Halt(**{f.name: values[f.name] for f in fields(Halt)})


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time in the ledger is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
