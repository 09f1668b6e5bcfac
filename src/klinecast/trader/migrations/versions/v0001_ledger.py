"""0001: the first ledger (predictions, orders, positions, outcomes, equity, state and the
prediction_outcomes view), as klinecast's own migration table (`schema_version` 1) made it."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("prob_up", sa.Float),
        sa.Column("target", sa.Integer),
        sa.Column("model_version", sa.String(200)),
        sa.Column("feature_time", sa.String(40)),
        sa.Column("close", sa.Float),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(36), primary_key=True),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("leg", sa.String(10), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("fill_price", sa.Float),
        sa.Column("fee", sa.Float),
        sa.Column("exchange_order_id", sa.String(40)),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_table(
        "positions",
        sa.Column("symbol", sa.String(20), primary_key=True),
        sa.Column("qty", sa.Float, nullable=False),
        sa.Column("hour", UTC, nullable=False),
    )
    op.create_table(
        "outcomes",
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("next_close", sa.Float, nullable=False),
        sa.Column("actual_up", sa.Boolean, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("correct", sa.Boolean),
        sa.Column("strategy_return", sa.Float, nullable=False),
        sa.Column("market_return", sa.Float, nullable=False),
    )
    op.create_table(
        "equity",
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("equity", sa.Float, nullable=False),
        sa.Column("buy_and_hold", sa.Float, nullable=False),
    )
    op.create_table(
        "state",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.execute(
        "CREATE VIEW prediction_outcomes AS "
        "SELECT p.hour, p.symbol, p.prob_up, p.target, p.model_version, p.status, "
        "o.actual_up, o.correct, o.strategy_return, o.market_return "
        "FROM predictions p LEFT JOIN outcomes o ON o.hour = p.hour"
    )
