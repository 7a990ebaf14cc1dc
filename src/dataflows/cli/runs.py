"""``dataflows runs list|show|cancel|retry``: inspect and steer runs through the store."""

from __future__ import annotations

import click

from dataflows.app import Dataflows
from dataflows.cli.common import (
    app_argument,
    client_app,
    json_option,
    require_existing_sqlite,
    run_client,
    stdout,
    store_options,
)
from dataflows.cli.render import dumps, run_json, run_view, runs_json, runs_table
from dataflows.errors import InvalidRunState
from dataflows.models import Run

STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled")


@click.group()
def runs() -> None:
    """Inspect, cancel and retry runs.

    These commands only need the store: give APP to use the app's database, or --database-url
    (else DATAFLOWS_DATABASE_URL, else ./.dataflows/dataflows.db).
    """


def _client(spec: str | None, database_url: str | None, schema: str | None) -> Dataflows:
    app = client_app(spec, database_url, schema)
    require_existing_sqlite(app)
    return app


@runs.command("list")
@app_argument(required=False)
@click.option("--workflow", "workflow_id", default=None, help="Only runs of this workflow.")
@click.option(
    "--status", type=click.Choice(STATUSES), default=None, help="Only runs in this status."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="At most this many.",
)
@json_option
@store_options
def list_runs(
    app_spec: str | None,
    workflow_id: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """List runs, newest first."""
    app = _client(app_spec, database_url, schema)
    found = run_client(app, lambda a: a.list_runs(workflow_id, status, limit))
    if as_json:
        click.echo(dumps(runs_json(found)))
    elif not found:
        stdout().print("No runs.", style="dim")
    else:
        stdout().print(runs_table(found))


@runs.command("show")
@click.argument("run_id")
@app_argument(required=False)
@click.option("--traceback", is_flag=True, help="Also print the error's traceback.")
@json_option
@store_options
def show(
    run_id: str,
    app_spec: str | None,
    traceback: bool,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Show a run: its status, step timeline, error, input and result."""
    app = _client(app_spec, database_url, schema)
    run: Run = run_client(app, lambda a: a.get_run(run_id))
    if as_json:
        click.echo(dumps(run_json(run)))
    else:
        stdout().print(run_view(run, traceback=traceback))


@runs.command("cancel")
@click.argument("run_id")
@app_argument(required=False)
@json_option
@store_options
def cancel(
    run_id: str, app_spec: str | None, as_json: bool, database_url: str | None, schema: str | None
) -> None:
    """Cancel a run: it starts no further step.

    A step already running finishes but its result is discarded. Cancelling a cancelled run
    succeeds; cancelling a completed or failed one fails (exit 1) and leaves it as it is.
    """
    app = _client(app_spec, database_url, schema)
    status = run_client(app, lambda a: a.cancel(run_id))
    if status != "cancelled":
        raise click.ClickException(str(InvalidRunState(run_id, status, "cancel")))
    if as_json:
        click.echo(dumps({"run_id": run_id, "status": status}))
    else:
        stdout().print(f"Run {run_id} [magenta]cancelled[/].")


@runs.command("retry")
@click.argument("run_id")
@app_argument(required=False)
@json_option
@store_options
def retry(
    run_id: str, app_spec: str | None, as_json: bool, database_url: str | None, schema: str | None
) -> None:
    """Run a failed or cancelled run again.

    Recorded step results stay; failed steps run again when a worker picks the run up.
    """
    app = _client(app_spec, database_url, schema)
    status = run_client(app, lambda a: a.retry(run_id))
    if as_json:
        click.echo(dumps({"run_id": run_id, "status": status}))
    else:
        stdout().print(f"Run {run_id} [cyan]{status}[/] again; a worker will pick it up.")
