"""Alembic revisions of the ledger, oldest first by their down_revision chain."""
