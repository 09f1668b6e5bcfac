import pytest

from klinecast.redaction import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:hunter2@db:5432/ledger", "postgresql://me:***@db:5432/ledger"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("postgresql://me@db/ledger", "postgresql://me@db/ledger"),
        ("redis://:hunter2@[::1", "redis://***"),  # not parseable: only the scheme is kept
    ],
)
def test_a_url_loses_its_password_and_nothing_else(url, shown):
    assert redact(url) == shown
