"""``dataflows schedules [list]|pause ID|resume ID``: the schedules workers keep, through the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

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
from dataflows.cli.render import dumps
from dataflows.http.views import schedule_view
from dataflows.models import Schedule
from dataflows.schedules import time_zone


class _ListByDefault(click.Group):
    """``dataflows schedules`` (with options, or APP, but no subcommand) lists them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ListByDefault)
def schedules() -> None:
    """List, pause and resume schedules (cron triggers).

    Workers write the schedules of their code as they start. These commands only need the
    store: give APP to use the app's database, or --database-url (else DATAFLOWS_DATABASE_URL,
    else ./.dataflows/dataflows.db).
    """


def _client(spec: str | None, database_url: str | None, schema: str | None) -> Dataflows:
    app = client_app(spec, database_url, schema)
    require_existing_sqlite(app)
    return app


@schedules.command("list")
@app_argument(required=False)
@json_option
@store_options
def list_schedules(
    app_spec: str | None, as_json: bool, database_url: str | None, schema: str | None
) -> None:
    """List schedules with when each fires next (the default)."""
    app = _client(app_spec, database_url, schema)
    found: list[Schedule] = run_client(app, lambda a: a.list_schedules())
    if as_json:
        click.echo(dumps(schedules_json(found)))
    elif not found:
        stdout().print("No schedules. A worker writes those of its code as it starts.", style="dim")
    else:
        stdout().print(schedules_table(found))


@schedules.command("pause")
@click.argument("schedule_id")
@app_argument(required=False)
@json_option
@store_options
def pause(
    schedule_id: str,
    app_spec: str | None,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Pause a schedule: it fires no tick until resumed, across deploys too."""
    app = _client(app_spec, database_url, schema)
    schedule: Schedule = run_client(app, lambda a: a.pause_schedule(schedule_id))
    _changed(schedule, as_json, f"Schedule {schedule_id} [magenta]paused[/].")


@schedules.command("resume")
@click.argument("schedule_id")
@app_argument(required=False)
@json_option
@store_options
def resume(
    schedule_id: str,
    app_spec: str | None,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Resume a schedule from its next tick (the ticks it missed while paused are skipped)."""
    app = _client(app_spec, database_url, schema)
    schedule: Schedule = run_client(app, lambda a: a.resume_schedule(schedule_id))
    _changed(
        schedule, as_json, f"Schedule {schedule_id} [green]resumed[/]; next tick {_next(schedule)}."
    )


def _changed(schedule: Schedule, as_json: bool, message: str) -> None:
    """What pause and resume print: the schedule as JSON, or one line."""
    if as_json:
        click.echo(dumps(schedule_view(schedule)))
    else:
        stdout().print(message)


def schedules_json(found: Sequence[Schedule]) -> dict[str, Any]:
    """``schedules list --json``: as ``GET /schedules`` lists them."""
    return {"schedules": [schedule_view(s) for s in found]}


def _next(schedule: Schedule) -> str:
    """When it fires next, on the schedule's own clocks (its zone's offset shown)."""
    if schedule.next_at is None:
        return ""
    return _in_zone(schedule.next_at, schedule.tz).strftime("%Y-%m-%d %H:%M %Z")


def _in_zone(value: datetime, tz: str) -> datetime:
    try:
        return value.astimezone(time_zone(tz))
    except ValueError:  # a zone this machine does not know: UTC
        return value


def schedules_table(found: Sequence[Schedule]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("ID", "WORKFLOW", "CRON", "ZONE", "CATCH UP", "NEXT", "STATE"):
        table.add_column(column)
    for s in found:
        state = Text("paused", style="magenta") if s.paused else Text("active", style="green")
        table.add_row(s.id, s.workflow_id, s.expr, s.tz, s.catch_up, _next(s), state)
    return table
