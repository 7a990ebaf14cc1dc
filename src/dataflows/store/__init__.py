"""Store backends behind one interface: :func:`open_store` picks one from a URL."""

from __future__ import annotations

import os

from dataflows.extras import needed_for
from dataflows.store.base import Store

__all__ = ["Store", "create_store", "DEFAULT_SQLITE_URL"]

DEFAULT_SQLITE_URL = "sqlite:///.dataflows/dataflows.db"


def create_store(url: str | None = None, *, schema: str = "dataflows") -> Store:
    """A store for ``url``: argument, else ``DATAFLOWS_DATABASE_URL``, else the SQLite default.

    ``postgresql://…`` (or ``postgres://…``) selects PostgreSQL with its tables in ``schema``;
    ``sqlite:///path`` selects SQLite. The store is not opened yet.
    """
    url = url or os.environ.get("DATAFLOWS_DATABASE_URL") or DEFAULT_SQLITE_URL
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        with needed_for("a postgresql:// database URL"):
            from dataflows.store.postgres import PostgresStore

        return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://"), schema=schema)
    if url.startswith("sqlite:"):
        from dataflows.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url))
    raise ValueError(f"unsupported database URL {url!r}: use postgresql://… or sqlite:///path")
