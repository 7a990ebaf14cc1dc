"""Store backends behind one interface: :func:`create_store` picks one from a URL."""

from __future__ import annotations

import os

from dataflows.errors import InvalidDatabaseURL
from dataflows.extras import needed_for
from dataflows.store.base import Store
from dataflows.store.urls import redact_password

__all__ = ["Store", "create_store", "database_url", "redact_password", "DEFAULT_SQLITE_URL"]

DEFAULT_SQLITE_URL = "sqlite:///.dataflows/dataflows.db"
_POSTGRES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def create_store(
    url: str | None = None, *, schema: str = "dataflows", connect_timeout: float | None = None
) -> Store:
    """A store for ``url``: argument, else ``DATAFLOWS_DATABASE_URL``, else the SQLite default.

    ``postgresql://…`` (or ``postgres://…``) selects PostgreSQL with its tables in ``schema``;
    ``sqlite:///path`` selects SQLite. Any other URL raises :class:`InvalidDatabaseURL`. The
    store is not opened yet; ``connect_timeout`` bounds its first PostgreSQL connection.
    """
    url = database_url(url)
    if url.startswith(_POSTGRES):
        with needed_for("a postgresql:// database URL"):
            from dataflows.store.postgres import PostgresStore

        return PostgresStore(
            url.replace("postgresql+psycopg://", "postgresql://"),
            schema=schema,
            connect_timeout=connect_timeout,
        )
    from dataflows.store.sqlite import SQLiteStore, sqlite_path

    return SQLiteStore(sqlite_path(url))


def database_url(url: str | None = None) -> str:
    """The URL a store for ``url`` uses: argument, else ``DATAFLOWS_DATABASE_URL``, else the
    SQLite default. Raises :class:`InvalidDatabaseURL` for an unknown scheme or a malformed
    SQLite URL, before anything is opened."""
    url = url or os.environ.get("DATAFLOWS_DATABASE_URL") or DEFAULT_SQLITE_URL
    if url.startswith(_POSTGRES):
        return url
    if url.startswith("sqlite:"):
        from dataflows.store.sqlite import sqlite_path

        sqlite_path(url)
        return url
    raise InvalidDatabaseURL(
        redact_password(url),
        "use postgresql://user:password@host:port/database or sqlite:///path/to/file.db",
    )
