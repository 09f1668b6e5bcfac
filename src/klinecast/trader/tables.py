"""The ledger's tables as the newest migration leaves them (`klinecast.trader.migrations`):
what the ledger's queries read and write."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
UTC = sa.DateTime(timezone=True)

#: Append-only: an hour's record is never rewritten. A later cycle of the same hour that finds
#: something else to say (a failed hour traded after all) adds the next attempt, which names
#: the one it corrects; the newest attempt of an hour is its record.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("hour", UTC, primary_key=True),  # open time of the newest closed candle
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),  # 1, then 2 for its correction, ...
    sa.Column("prob_up", sa.Float),
    #: the side held after the hour's cycle: -1 short, 0 flat, 1 long (null: unknown)
    sa.Column("target", sa.Integer),
    sa.Column("model_version", sa.String(200)),
    sa.Column("feature_time", sa.String(40)),
    sa.Column("close", sa.Float),
    sa.Column("status", sa.String(20), nullable=False),  # traded | no_trade | halted | failed
    sa.Column("reason", sa.Text),
    #: a failed hour's stage (market_data | account | filters | clock | refusal | order | book)
    #: and the exchange's code, if it gave one
    sa.Column("stage", sa.String(20)),
    sa.Column("error_code", sa.Integer),
    sa.Column("corrects", sa.Integer),  # the attempt this one corrects
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
    #: intent (sent or about to be, its fate unknown) | open (NEW or PARTIALLY_FILLED at the
    #: exchange) | filled | canceled (ended unfilled or part filled: CANCELED, EXPIRED) |
    #: rejected (refused: never booked) | absent (the exchange has no such order)
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("exchange_status", sa.String(20)),  # Binance's word for it
    sa.Column("executed_qty", sa.Float, nullable=False),  # what has executed (base asset)
    sa.Column("quote_qty", sa.Float),  # what it cost or brought (quote asset)
    sa.Column("fill_price", sa.Float),  # the average price of what executed
    sa.Column("fee", sa.Float),  # the commission, in the quote asset's terms
    #: the commission taken in the base asset (a BUY's, by Binance's default): the holding
    #: grows by the executed quantity less this
    sa.Column("base_fee", sa.Float, nullable=False),
    sa.Column("exchange_order_id", sa.String(40)),
    sa.Column("created_at", UTC, nullable=False),
    sa.Column("updated_at", UTC, nullable=False),
    # what failed, the last time something did: Binance's code and message, and whether the
    # order may exist at the exchange (a timeout, a 5xx, an unreadable answer)
    sa.Column("error_code", sa.Integer),
    sa.Column("error_message", sa.Text),
    sa.Column("may_exist", sa.Boolean),
)
positions = sa.Table(
    "positions",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("qty", sa.Float, nullable=False),  # what the account holds of it, net of fees
    #: what a close left below the smallest order the filters allow: held, but no position
    sa.Column("dust", sa.Float, nullable=False),
    sa.Column("hour", UTC, nullable=False),
)
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("hour", UTC, primary_key=True),  # the predicted hour's feature time t
    sa.Column("symbol", sa.String(20), primary_key=True),
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
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("equity", sa.Float, nullable=False),  # growth of 1 after fees, of this symbol
    sa.Column("buy_and_hold", sa.Float, nullable=False),
)
state = sa.Table(
    "state",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTC, nullable=False),
)
halts = sa.Table(
    "halts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # kill_switch | reconcile
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("halted_at", UTC, nullable=False),
    sa.Column("equity_at_halt", sa.Float),
    sa.Column("resumed_at", UTC),  # null while the halt holds
    sa.Column("resumed_by", sa.String(100)),
    sa.Column("decision", sa.Text),  # what the operator decided, in words
    sa.Column("equity_base", sa.Float),  # a kill switch's resume: later cycles measure from it
)
reconciliations = sa.Table(
    "reconciliations",
    metadata,
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
#: Every failure of a cycle, as it happened (append-only): the failed hour's prediction row
#: says the same, and an hour refused as older than one on record has only this row.
failures = sa.Table(
    "failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTC, nullable=False),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("hour", UTC, nullable=False),  # the hour the cycle was for
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("code", sa.Integer),  # the exchange's error code, if it gave one
    sa.Column("message", sa.Text, nullable=False),
)
#: The paper broker's own book: what a simulated exchange has booked, apart from the ledger.
paper_orders = sa.Table(
    "paper_orders",
    metadata,
    sa.Column("client_order_id", sa.String(36), primary_key=True),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("fee", sa.Float, nullable=False),
    sa.Column("booked_at", UTC, nullable=False),
)
#: The shadow book: the challenger's call each hour (never traded), and what the position its
#: rule would hold earned once the next candle closed, after the same costs. A symbol's rows of
#: one version are one shadow book; a newer challenger starts its own, flat.
shadow_calls = sa.Table(
    "shadow_calls",
    metadata,
    sa.Column("hour", UTC, primary_key=True),
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("version", sa.String(200), nullable=False),  # the challenger's, as it answered
    sa.Column("prob_up", sa.Float),
    sa.Column("target", sa.Integer, nullable=False),  # the side its rule would hold after the hour
    sa.Column("status", sa.String(20), nullable=False),  # called | no_call (it held on)
    sa.Column("reason", sa.Text),
    sa.Column("created_at", UTC, nullable=False),
)
shadow_outcomes = sa.Table(
    "shadow_outcomes",
    metadata,
    sa.Column("hour", UTC, primary_key=True),
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("target", sa.Integer, nullable=False),
    sa.Column("correct", sa.Boolean),  # null while flat
    sa.Column("strategy_return", sa.Float, nullable=False),
    sa.Column("market_return", sa.Float, nullable=False),
    sa.Column("equity", sa.Float, nullable=False),  # growth of 1 of this version's shadow book
)

VIEW = """CREATE VIEW prediction_outcomes AS
SELECT p.hour, p.symbol, p.prob_up, p.target, p.model_version, p.status,
       o.actual_up, o.correct, o.strategy_return, o.market_return
FROM predictions p LEFT JOIN outcomes o ON o.hour = p.hour AND o.symbol = p.symbol
WHERE p.attempt = (SELECT MAX(q.attempt) FROM predictions q
                   WHERE q.symbol = p.symbol AND q.hour = p.hour)"""
