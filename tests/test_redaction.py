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


@pytest.mark.parametrize(
    ("connection", "shown"),
    [
        ("redis:6379", "redis:6379"),
        ("redis:6379,db=0,password=hunter2,ssl=true", "redis:6379,db=0,password=***,ssl=true"),
        ("password=hunter2,redis:6379", "password=***,redis:6379"),
        ("redis://me:hunter2@redis:6379/0", "redis://me:***@redis:6379/0"),
    ],
)
def test_a_redis_connection_string_loses_its_password(connection, shown):
    from klinecast.redaction import redact_redis

    assert redact_redis(connection) == shown
