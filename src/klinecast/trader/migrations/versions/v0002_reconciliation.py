"""0002: what reconciling with the exchange needs. Orders record what failed (Binance's code
and message, whether the order may exist); halts (kill switch or reconcile difference) with
who resumed them, when, what was decided and the new equity base; every reconciliation's
positions; the paper broker's own book. A kill switch held in the old `state` row moves into
`halts`."""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("error_code", sa.Integer))
        orders.add_column(sa.Column("error_message", sa.Text))
        orders.add_column(sa.Column("may_exist", sa.Boolean))
    halts = op.create_table(
        "halts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("halted_at", UTC, nullable=False),
        sa.Column("equity_at_halt", sa.Float),
        sa.Column("resumed_at", UTC),
        sa.Column("resumed_by", sa.String(100)),
        sa.Column("decision", sa.Text),
        sa.Column("equity_base", sa.Float),
    )
    op.create_table(
        "reconciliations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checked_at", UTC, nullable=False),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("ledger_position", sa.Float, nullable=False),
        sa.Column("exchange_position", sa.Float, nullable=False),
        sa.Column("difference", sa.Float, nullable=False),
        sa.Column("tolerance", sa.Float, nullable=False),
        sa.Column("agree", sa.Boolean, nullable=False),
    )
    op.create_table(
        "paper_orders",
        sa.Column("client_order_id", sa.String(36), primary_key=True),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Float, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("fee", sa.Float, nullable=False),
        sa.Column("booked_at", UTC, nullable=False),
    )
    connection = op.get_bind()
    held = connection.execute(sa.text("SELECT value FROM state WHERE key = 'halted'")).first()
    if held is not None:
        symbol = connection.execute(
            sa.text("SELECT symbol FROM predictions ORDER BY hour DESC LIMIT 1")
        ).scalar()
        op.bulk_insert(
            halts,
            [
                {
                    "symbol": symbol or "BTCUSDT",
                    "kind": "kill_switch",
                    "reason": held[0],
                    "halted_at": dt.datetime.now(dt.UTC),
                }
            ],
        )
        connection.execute(sa.text("DELETE FROM state WHERE key = 'halted'"))
