"""``dataflows migrate`` on both stores."""

from __future__ import annotations

from dataflows.store.queries import load_migrations
from tests.cli.conftest import SAMPLE_APP, Cli
from tests.pg import DbTarget


def test_migrate_applies_then_reports_up_to_date(run_cli: Cli, db: DbTarget) -> None:
    first = run_cli("migrate").stdout
    dialect = "sqlite" if db.kind == "sqlite" else "postgres"
    for version, name, _ in load_migrations(dialect):
        assert f"{version:04d}_{name}" in first
    assert first.startswith("Applied ")
    if db.schema:
        assert f"(schema {db.schema})" in first
    assert "up to date" in run_cli("migrate").stdout


def test_migrate_with_an_app(run_cli: Cli) -> None:
    assert "Applied " in run_cli("migrate", SAMPLE_APP).stdout
