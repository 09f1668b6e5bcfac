"""Database URLs fit for logs, files and error messages: never with their password."""

from __future__ import annotations


def redact(url: str) -> str:
    """The URL without its password (`postgresql://me:***@host/db`).

    Anything SQLAlchemy cannot parse keeps only its scheme, since the rest may hold a secret.
    """
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"
