"""Both dialects define the same queries and the same migrations."""

from __future__ import annotations

from dataflows.store.queries import load_migrations, load_queries


def test_dialects_define_the_same_queries() -> None:
    assert sorted(load_queries("postgres")) == sorted(load_queries("sqlite"))


def test_dialects_have_the_same_migration_versions() -> None:
    sqlite = [(version, name) for version, name, _ in load_migrations("sqlite")]
    postgres = [(version, name) for version, name, _ in load_migrations("postgres")]
    assert sqlite == postgres
    assert [version for version, _ in sqlite] == list(range(1, len(sqlite) + 1))
