"""``dataflows migrate [APP]``: create or upgrade the store's schema."""

from __future__ import annotations

import click

from dataflows.app import Dataflows
from dataflows.cli.common import (
    app_argument,
    client_app,
    display_url,
    run_client,
    stderr,
    stdout,
    store_options,
    store_url,
)
from dataflows.store import create_store


@click.command()
@app_argument(required=False)
@store_options
def migrate(app_spec: str | None, database_url: str | None, schema: str | None) -> None:
    """Apply pending migrations to the database.

    Safe to run from several machines at once (PostgreSQL serialises it with an advisory lock).
    Needed only for apps created with auto_migrate=False; others migrate on first use.
    """
    app = client_app(app_spec, database_url, schema)
    url = store_url(app)
    target = display_url(url)
    if not url.startswith("sqlite:"):
        target += f" (schema {app.schema})"
    with stderr().status(f"Migrating {target} …"):
        applied = _migrate(app, url)
    console = stdout()
    if applied:
        noun = "migration" if len(applied) == 1 else "migrations"
        console.print(f"Applied {len(applied)} {noun} to {target}:")
        for name in applied:
            console.print(f"  [green]{name}[/]")
    else:
        console.print(f"{target} is up to date; no migration to apply.")


def _migrate(app: Dataflows, url: str) -> list[str]:

    async def apply(_: Dataflows) -> list[str]:
        store = create_store(url, schema=app.schema)
        try:
            await store.open(migrate=False)
            return await store.migrate()
        finally:
            await store.close()

    return run_client(app, apply)
