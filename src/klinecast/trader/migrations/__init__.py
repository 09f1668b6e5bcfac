"""The ledger's schema history as Alembic revisions (`versions/`), applied in order by
`klinecast.trader.schema.upgrade`. Append a revision for every change; never edit one that has
shipped: ledgers in the field have run it."""
