"""``sql/<dialect>/schema.sql`` is the schema the migrations build, functions included.

Each dialect's migrations are applied to an empty database by a real store, the schema file to
another, and their catalogs compared: tables, columns (order, types, nullability, defaults),
indexes and constraints, and on PostgreSQL every function's signature, result and body. Only the
``migrations`` table, which the store creates and fills itself, is left out.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dataflows.store import create_store
from dataflows.store.sqlite import sqlite_path
from tests.pg import DbTarget, create_schema, drop_schema

Catalog = dict[str, list[tuple[Any, ...]]]


def schema_file(dialect: str) -> str:
    path = resources.files("dataflows.store").joinpath("sql", dialect, "schema.sql")
    return path.read_text(encoding="utf-8")


async def migrate(target: DbTarget) -> None:
    store = create_store(target.url, schema=target.schema or "dataflows")
    await store.open()  # creates the schema from the migrations
    await store.close()


# -- PostgreSQL ------------------------------------------------------------------------------------

PG_CATALOG = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
               column_default, is_identity, identity_generation
        FROM information_schema.columns
        WHERE table_schema = %(schema)s AND table_name <> 'migrations'
        ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, replace(indexdef, %(schema)s || '.', '')
        FROM pg_indexes
        WHERE schemaname = %(schema)s AND tablename <> 'migrations'
        ORDER BY tablename, indexname""",
    "constraints": """
        SELECT t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.connamespace = %(schema)s::regnamespace AND t.relname <> 'migrations'
        ORDER BY t.relname, c.conname""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_function_result(p.oid), l.lanname, p.provolatile, p.proconfig,
               p.prosrc
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = %(schema)s::regnamespace
        ORDER BY p.proname, 2""",
}


def pg_catalog(url: str, schema: str) -> Catalog:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            part: [tuple(row) for row in conn.execute(query, {"schema": schema}).fetchall()]
            for part, query in PG_CATALOG.items()
        }


async def test_postgres_migrations_build_schema_sql(pg_url: DbTarget) -> None:
    assert pg_url.schema is not None
    await migrate(pg_url)
    from_migrations = pg_catalog(pg_url.url, pg_url.schema)

    other = create_schema(pg_url.url)
    try:
        with psycopg.connect(pg_url.url, autocommit=True) as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(other)))
            conn.execute(schema_file("postgres").encode(), prepare=False)
        from_file = pg_catalog(pg_url.url, other)
    finally:
        drop_schema(pg_url.url, other)

    assert len(from_migrations["functions"]) >= 6 and len(from_migrations["columns"]) > 50
    for part in PG_CATALOG:
        assert from_file[part] == from_migrations[part], part


# -- SQLite ----------------------------------------------------------------------------------------


def sqlite_catalog(path: str) -> Catalog:
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE name NOT LIKE 'sqlite_autoindex%' AND tbl_name <> 'migrations'"
            " ORDER BY type, name"
        ).fetchall()
        catalog: Catalog = {"objects": [(kind, name, table) for kind, name, table, _ in objects]}
        for kind, name, _, text in objects:
            if kind == "table":
                catalog[f"columns {name}"] = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
                catalog[f"indexes {name}"] = conn.execute(f"PRAGMA index_list({name})").fetchall()
                rowid = "WITHOUT ROWID" not in " ".join(str(text).upper().split())
                catalog[f"rowid {name}"] = [(rowid,)]
            elif kind == "index":
                catalog[f"index {name}"] = conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
                catalog[f"index sql {name}"] = [(" ".join(str(text).split()),)]
        return catalog
    finally:
        conn.close()


async def test_sqlite_migrations_build_schema_sql(sqlite_target: DbTarget, tmp_path: Path) -> None:
    await migrate(sqlite_target)
    from_migrations = sqlite_catalog(sqlite_path(sqlite_target.url))

    other = tmp_path / "from_schema_file.db"
    conn = sqlite3.connect(other)
    try:
        conn.executescript(schema_file("sqlite"))
    finally:
        conn.close()
    from_file = sqlite_catalog(str(other))

    assert len(from_migrations["objects"]) > 15
    assert from_file == from_migrations
