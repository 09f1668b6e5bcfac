"""0004: what the exchange's rules need. Orders keep what executed (quantity, quote, the
commission taken in the base asset) and Binance's own status, since an order may stay open;
positions keep the dust a close leaves below the smallest order; predictions become
append-only (an hour's attempts: `attempt` joins the primary key, `corrects` names the attempt
a later one corrects; a failed hour's `stage` and `error_code`); every failure of a cycle is a
row of `failures`. Rows are kept: a filled order's executed quantity is its quantity, every
prediction is its hour's first attempt."""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
UTC = sa.DateTime(timezone=True)

VIEW = """CREATE VIEW prediction_outcomes AS
SELECT p.hour, p.symbol, p.prob_up, p.target, p.model_version, p.status,
       o.actual_up, o.correct, o.strategy_return, o.market_return
FROM predictions p LEFT JOIN outcomes o ON o.hour = p.hour AND o.symbol = p.symbol
WHERE p.attempt = (SELECT MAX(q.attempt) FROM predictions q
                   WHERE q.symbol = p.symbol AND q.hour = p.hour)"""


def upgrade() -> None:
    connection = op.get_bind()
    op.execute("DROP VIEW IF EXISTS prediction_outcomes")
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("exchange_status", sa.String(20)))
        orders.add_column(sa.Column("executed_qty", sa.Float, nullable=False, server_default="0"))
        orders.add_column(sa.Column("quote_qty", sa.Float))
        orders.add_column(sa.Column("base_fee", sa.Float, nullable=False, server_default="0"))
    op.execute(
        "UPDATE orders SET executed_qty = qty, exchange_status = 'FILLED' WHERE status = 'filled'"
    )
    with op.batch_alter_table("positions") as positions:
        positions.add_column(sa.Column("dust", sa.Float, nullable=False, server_default="0"))
    with op.batch_alter_table("predictions") as predictions:
        predictions.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        predictions.add_column(sa.Column("stage", sa.String(20)))
        predictions.add_column(sa.Column("error_code", sa.Integer))
        predictions.add_column(sa.Column("corrects", sa.Integer))
    key = sa.inspect(connection).get_pk_constraint("predictions").get("name")
    with warnings.catch_warnings():
        # SQLite's copy of the table is reflected with the old key (symbol, hour)
        warnings.filterwarnings("ignore", message=".*specifies columns .* as primary_key")
        with op.batch_alter_table("predictions", recreate="always") as predictions:
            if key and connection.dialect.name != "sqlite":
                predictions.drop_constraint(key, type_="primary")
            predictions.create_primary_key("predictions_pkey", ["symbol", "hour", "attempt"])
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTC, nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("code", sa.Integer),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.execute(VIEW)
