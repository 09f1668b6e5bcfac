"""0005: the shadow book. Each hour the challenger's call on the symbol (its version, its
probability, the position its rule would hold), and once the next candle has closed what that
position would have earned after the same costs: a paper book beside the traded one, which the
promotion rule compares with it. No row of an earlier table changes."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shadow_calls",
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("symbol", sa.String(20), primary_key=True),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("prob_up", sa.Float),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_table(
        "shadow_outcomes",
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("symbol", sa.String(20), primary_key=True),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("correct", sa.Boolean),
        sa.Column("strategy_return", sa.Float, nullable=False),
        sa.Column("market_return", sa.Float, nullable=False),
        sa.Column("equity", sa.Float, nullable=False),
    )

