"""Database URLs and Redis connection strings fit for logs, files and error messages: never
with their password."""

from __future__ import annotations

import re

#: Feast's Redis connection string: host:port[,db=N][,password=...][,ssl=true]
_REDIS_PASSWORD = re.compile(r"(?i)(^|,)(password=)[^,]*")


def redact(url: str) -> str:
    """The URL without its password (`postgresql://me:***@host/db`).

    Anything SQLAlchemy cannot parse keeps only its scheme, since the rest may hold a secret.
    """
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"


def redact_redis(connection: str) -> str:
    """Feast's Redis connection string (or a redis:// URL) without its password."""
    if "://" in connection:
        return redact(connection)
    return _REDIS_PASSWORD.sub(r"\1\2***", connection)
