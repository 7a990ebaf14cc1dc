"""Sanity checks of the test fixtures themselves (tests/conftest.py, tests/pg.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from tests.pg import DbTarget

_seen_schemas: list[tuple[str, str]] = []


def test_pg_schema_exists_and_is_writable(pg_url: DbTarget) -> None:
    assert pg_url.kind == "postgres"
    assert pg_url.schema is not None and pg_url.schema.startswith("t_")
    assert urlsplit(pg_url.url).path.startswith("/dataflows_test_")
    with psycopg.connect(pg_url.url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [pg_url.schema]
        ).fetchone()
        assert found == (1,)
        table = sql.Identifier(pg_url.schema, "probe")
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'x'), (2, 'y')").format(table))
        rows = conn.execute(sql.SQL("SELECT id, v FROM {} ORDER BY id").format(table)).fetchall()
        assert rows == [(1, "x"), (2, "y")]
    _seen_schemas.append((pg_url.url, pg_url.schema))


def test_pg_schema_is_dropped_after_its_test(pg_url: DbTarget) -> None:
    # Runs after the test above (file order): its schema must be gone, and ours must differ.
    assert _seen_schemas, "test_pg_schema_exists_and_is_writable did not run first"
    url, previous = _seen_schemas[-1]
    assert url == pg_url.url and previous != pg_url.schema
    with psycopg.connect(pg_url.url) as conn:
        gone = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", [previous]
        ).fetchone()
    assert gone == (0,)


def test_sqlite_target_is_writable(sqlite_target: DbTarget, tmp_path: Path) -> None:
    assert sqlite_target.kind == "sqlite" and sqlite_target.schema is None
    path = Path(sqlite_target.url.removeprefix("sqlite:///"))
    assert path.parent == tmp_path and not path.exists()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO probe VALUES (1, 'x')")
    conn.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT v FROM probe").fetchall() == [("x",)]
    conn.close()


def test_db_matches_its_id(db: DbTarget, request: pytest.FixtureRequest) -> None:
    assert db.kind == request.node.callspec.id
    assert (db.schema is None) == (db.kind == "sqlite")
