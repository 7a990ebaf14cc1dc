"""``dataflows send EVENT_NAME --data JSON [APP]``: store an event and start the runs it triggers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from dataflows.cli.common import (
    app_argument,
    client_app,
    json_option,
    run_client,
    stderr,
    stdout,
    store_options,
)
from dataflows.cli.render import dumps
from dataflows.models import SendResult
from dataflows.serialization import strict_loads


def parse_data(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    """``--data``: a JSON object, ``@file.json``, or ``-`` for standard input."""
    text = value
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]!r}: {exc.strerror}") from None
    try:
        data = strict_loads(text)  # the same numbers the HTTP API accepts: no NaN or Infinity
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    except ValueError as exc:
        raise click.BadParameter(f"not storable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"must be a JSON object, not {type(data).__name__}")
    return data


@click.command()
@click.argument("event_name")
@app_argument(required=False)
@click.option(
    "--data",
    default="{}",
    metavar="JSON",
    callback=parse_data,
    show_default=True,
    help="The event's data: a JSON object, @file.json, or - to read standard input.",
)
@click.option(
    "--id", "event_id", default=None, help="The event's id; an id already stored is ignored."
)
@json_option
@store_options
def send(
    event_name: str,
    app_spec: str | None,
    data: dict[str, Any],
    event_id: str | None,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Send an event: store it and start the workflows of APP it triggers.

    The event also resumes runs waiting for it (step.wait_for_event). Without APP (and
    DATAFLOWS_APP unset) no workflow is known, so the event is stored and delivered to waiting
    runs but starts no run.
    """
    app = client_app(app_spec, database_url, schema)
    if app_spec is None and not as_json:
        stderr().print(
            "[yellow]No APP given: the event is stored and resumes waiting runs, "
            "but starts no workflow.[/]"
        )
    result = run_client(app, lambda a: a.send(event_name, data, id=event_id))
    if as_json:
        value = {"event_id": result.event_id, "run_ids": list(result.run_ids)}
        resumed = list(result.resumed_run_ids)
        skipped = [{"workflow_id": w, "reason": why} for w, why in result.skipped]
        click.echo(
            dumps(
                {
                    **value,
                    "resumed_run_ids": resumed,
                    "duplicate": result.duplicate,
                    "skipped": skipped,
                }
            )
        )
    else:
        _print(event_name, result)


def _print(event_name: str, result: SendResult) -> None:
    console = stdout()
    if result.duplicate:
        console.print(f"Event {result.event_id} was already stored; nothing new was started.")
    else:
        console.print(f"Event {result.event_id} ({event_name}) stored.")
    if result.run_ids:
        noun = "run" if len(result.run_ids) == 1 else "runs"
        verb = "It had started" if result.duplicate else "Started"
        console.print(f"{verb} {len(result.run_ids)} {noun}:")
        for run_id in result.run_ids:
            console.print(f"  {run_id}")
    elif not result.duplicate and not result.skipped:
        console.print("No workflow is triggered by it.", style="dim")
    for workflow_id, why in result.skipped:
        console.print(f"Skipped {workflow_id}: {why}.")
    if result.resumed_run_ids:
        noun = "run" if len(result.resumed_run_ids) == 1 else "runs"
        console.print(f"Resumed {len(result.resumed_run_ids)} {noun} waiting for it:")
        for run_id in result.resumed_run_ids:
            console.print(f"  {run_id}")
