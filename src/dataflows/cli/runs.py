"""``dataflows runs list|show|export|cancel|retry``: inspect and steer runs through the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from click.core import ParameterSource

from dataflows.app import CANCELLABLE, Dataflows
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
from dataflows.durations import parse_duration
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


@runs.command("export")
@click.argument("run_id")
@app_argument(required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of stdout.",
)
@store_options
def export(
    run_id: str,
    app_spec: str | None,
    output: str | None,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Print a run's history as JSON (run, event, steps as recorded), for replay in tests.

    dataflows.testing.replay(app, path) replays the file against the code, as `dataflows check`
    does, and raises NonDeterminismError if the code diverges from it.
    """
    app = _client(app_spec, database_url, schema)
    history = run_client(app, lambda a: a.export_run(run_id))
    text = dumps(history) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        stdout().print(f"Wrote the history of run {run_id} to {output}")


@runs.command("cancel")
@click.argument("run_id", required=False)
@app_argument(required=False)
@click.option("--workflow", "workflow_id", default=None, help="Cancel the runs of this workflow.")
@click.option(
    "--status",
    "statuses",
    type=click.Choice(CANCELLABLE),
    multiple=True,
    help="Cancel the runs in this status (repeat for several; default: all three).",
)
@click.option(
    "--since",
    default=None,
    metavar="TIME",
    help="Cancel runs created at or after TIME: ISO 8601 (UTC if no offset) or a duration ago "
    "(2h, 1d).",
)
@click.option(
    "--before",
    default=None,
    metavar="TIME",
    help="Cancel runs created before TIME: ISO 8601 (UTC if no offset) or a duration ago.",
)
@json_option
@store_options
def cancel(
    run_id: str | None,
    app_spec: str | None,
    workflow_id: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    before: str | None,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Cancel a run, or every unfinished run matching the filters: it starts no further step.

    The children a run invoked and is waiting for are cancelled with it. A step already running
    finishes but its result is discarded. With RUN_ID: cancelling a cancelled run succeeds;
    cancelling a completed or failed one fails (exit 1) and leaves it as it is. With filters
    (--workflow, --status, --since, --before; at least one, and no RUN_ID): the matching runs
    are cancelled in batches, and the command prints how many.
    """
    bulk = bool(workflow_id or statuses or since or before)
    if not bulk:
        if run_id is None:
            raise click.UsageError("give a RUN_ID, or filters: --workflow, --status, --since …")
        _cancel_one(run_id, app_spec, as_json, database_url, schema)
        return
    spec = app_spec
    if run_id is not None:  # with filters, the one argument is APP (over $DATAFLOWS_APP)
        source = click.get_current_context().get_parameter_source("app_spec")
        if app_spec is not None and source is ParameterSource.COMMANDLINE:
            raise click.UsageError("give a RUN_ID or filters, not both")
        spec = run_id
    now = datetime.now(UTC)
    after_time = None if since is None else _time(since, "--since", now)
    before_time = None if before is None else _time(before, "--before", now)
    app = _client(spec, database_url, schema)
    count = run_client(
        app,
        lambda a: a.cancel_runs(
            workflow_id=workflow_id,
            status=list(statuses) or None,
            created_after=after_time,
            created_before=before_time,
        ),
    )
    if as_json:
        click.echo(dumps({"cancelled": count}))
    else:
        stdout().print(f"[magenta]Cancelled[/] {count} run{'' if count == 1 else 's'}.")


def _cancel_one(
    run_id: str, app_spec: str | None, as_json: bool, database_url: str | None, schema: str | None
) -> None:
    app = _client(app_spec, database_url, schema)
    status = run_client(app, lambda a: a.cancel(run_id))
    if status != "cancelled":
        raise click.ClickException(str(InvalidRunState(run_id, status, "cancel")))
    if as_json:
        click.echo(dumps({"run_id": run_id, "status": status}))
    else:
        stdout().print(f"Run {run_id} [magenta]cancelled[/].")


def _time(text: str, option: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC without an offset) or a duration before ``now``."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor a duration such as 2h", param_hint=option
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
