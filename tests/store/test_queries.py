"""Both dialects define the same queries, fragments and migrations."""

from __future__ import annotations

from dataflows.store.queries import load_fragments, load_migrations, load_queries


def test_dialects_define_the_same_queries() -> None:
    assert sorted(load_queries("postgres")) == sorted(load_queries("sqlite"))


def test_dialects_have_the_same_migration_versions() -> None:
    sqlite = [(version, name) for version, name, _ in load_migrations("sqlite")]
    postgres = [(version, name) for version, name, _ in load_migrations("postgres")]
    assert sqlite == postgres
    assert [version for version, _ in sqlite] == list(range(1, len(sqlite) + 1))


def test_dialects_define_the_same_fragments_and_expand_them() -> None:
    assert load_fragments("postgres") == load_fragments("sqlite") == ["fence"]
    for dialect in ("postgres", "sqlite"):
        for name, text in load_queries(dialect).items():
            assert "{fence" not in text, (dialect, name)
