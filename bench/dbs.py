"""Databases for the benchmark: one fresh PostgreSQL database per system, and the INSERT baseline.

Only psycopg and sqlite3 are used here, so the regression test can import this module from the
project's own environment.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_database(server_url: str, prefix: str) -> str:
    """Create ``{prefix}_{random}`` on the server and return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, db_url: str) -> None:
    name = database_name(db_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        # FORCE: a worker the harness had to kill may still hold a connection.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def scalar(url: str, query: str) -> int:
    """One integer from a query on PostgreSQL (counts the harness polls for)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def server_facts(server_url: str) -> dict[str, str]:
    """The server's version and the settings that decide commit cost."""
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "shared_buffers",
        "max_connections",
    )
    with psycopg.connect(server_url, autocommit=True) as conn:
        return {n: str(conn.execute(f"SHOW {n}".encode()).fetchone()[0]) for n in names}  # type: ignore[index]


# -- the bare INSERT round trip ---------------------------------------------------------------


def insert_round_trip(url: str, count: int = 2000) -> float:
    """Seconds per single-row autocommit INSERT (prepared), on the database at ``url``.

    PostgreSQL: a normal (logged) table, so each INSERT is one round trip plus one WAL flush —
    the floor under any engine that commits a step before running the code after it.
    SQLite: a file beside the store's, WAL mode, ``synchronous=FULL`` as dataflows uses.
    """
    if url.startswith("sqlite:"):
        return _sqlite_insert(Path(urlsplit(url).path[1:]), count)
    return _pg_insert(url, count)


def _pg_insert(url: str, count: int) -> float:
    table = sql.Identifier(f"bench_insert_{secrets.token_hex(4)}")
    insert = sql.SQL("INSERT INTO {} (v) VALUES (%s)").format(table)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)"
            ).format(table)
        )
        try:
            for i in range(50):  # warm up: connection, plan cache, prepared statement
                conn.execute(insert, (f"w{i}",), prepare=True)
            start = time.perf_counter()
            for i in range(count):
                conn.execute(insert, (f"v{i}",), prepare=True)
            return (time.perf_counter() - start) / count
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


def _sqlite_insert(store_path: Path, count: int) -> float:
    path = store_path.with_name(f"insert_{secrets.token_hex(4)}.db")
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(50):
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"w{i}",))
        start = time.perf_counter()
        for i in range(count):
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"v{i}",))
        return (time.perf_counter() - start) / count
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
