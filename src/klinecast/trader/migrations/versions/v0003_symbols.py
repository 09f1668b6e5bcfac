"""0003: a ledger of several symbols. Predictions, outcomes and equity are kept per (symbol,
hour): outcomes and equity gain a symbol column, and the three tables' primary keys become
(symbol, hour). The rows of a ledger that traded one symbol get that symbol (the one its
predictions name); nothing is dropped."""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

VIEW = """CREATE VIEW prediction_outcomes AS
SELECT p.hour, p.symbol, p.prob_up, p.target, p.model_version, p.status,
       o.actual_up, o.correct, o.strategy_return, o.market_return
FROM predictions p LEFT JOIN outcomes o ON o.hour = p.hour AND o.symbol = p.symbol"""


def upgrade() -> None:
    connection = op.get_bind()
    symbols = [r[0] for r in connection.execute(sa.text("SELECT DISTINCT symbol FROM predictions"))]
    if len(symbols) > 1:  # cannot happen before 0003: predictions' key was the hour alone
        raise RuntimeError(f"the ledger's predictions name several symbols: {symbols}")
    traded = symbols[0] if symbols else "BTCUSDT"
    op.execute("DROP VIEW IF EXISTS prediction_outcomes")
    for table in ("outcomes", "equity"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("symbol", sa.String(20), nullable=False, server_default=traded)
            )
    for table in ("predictions", "outcomes", "equity"):
        key = _primary_key_name(connection, table)
        with warnings.catch_warnings():
            # SQLite's copy of the table is reflected with the old key (the hour alone)
            warnings.filterwarnings("ignore", message=".*specifies columns 'hour' as primary_key")
            with op.batch_alter_table(table, recreate="always") as batch:
                if key and connection.dialect.name != "sqlite":
                    batch.drop_constraint(key, type_="primary")
                batch.create_primary_key(f"{table}_pkey", ["symbol", "hour"])
    for table in ("outcomes", "equity"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("symbol", server_default=None)
    op.execute(VIEW)


def _primary_key_name(connection, table: str) -> str | None:
    return sa.inspect(connection).get_pk_constraint(table).get("name")
