"""``dataflows check APP``: the deploy check. Replays every unfinished run against APP's code,
without calling any step function, and reports the runs the code would diverge from."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from dataflows.app import Dataflows
from dataflows.cli.common import (
    app_argument,
    client_app,
    require_existing_sqlite,
    run_client,
    stderr,
    stdout,
    store_options,
)
from dataflows.replay import PAGE_SIZE, Verdict, WorkflowReport, check_runs

#: Diverging runs listed per workflow in the text output (``--json`` lists them all).
SHOWN = 20


@click.command()
@app_argument(required=True)
@click.option("--workflow", "workflow_id", default=None, help="Only the runs of this workflow.")
@click.option(
    "--page-size",
    type=click.IntRange(1, 100_000),
    default=PAGE_SIZE,
    show_default=True,
    help="Runs read (and replayed) per page.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text (for CI).")
@store_options
def check(
    app_spec: str,
    workflow_id: str | None,
    page_size: int,
    as_json: bool,
    database_url: str | None,
    schema: str | None,
) -> None:
    """Replay every unfinished run against APP's code, calling no step function.

    A run is compatible when its replay returns every recorded step and reaches its first new
    step (or a step in progress, or the end) without diverging: renamed, removed or reordered
    steps, or a step asked as another kind. Exits 0 when every run is compatible, 1 otherwise.
    """
    app = client_app(app_spec, database_url, schema)
    require_existing_sqlite(app)
    started = time.monotonic()

    async def go(a: Dataflows) -> dict[str, WorkflowReport]:
        await a.open()
        return await check_runs(a.store, a.registry, workflow_id=workflow_id, page_size=page_size)

    if as_json:
        reports = run_client(app, go)
    else:
        with stderr().status("Replaying unfinished runs …"):
            reports = run_client(app, go)
    took = time.monotonic() - started
    ok = all(not r.diverging for r in reports.values())
    if as_json:
        click.echo(json.dumps(report_json(reports, ok, took), indent=2, ensure_ascii=False))
    else:
        print_reports(reports, ok, took)
    raise SystemExit(0 if ok else 1)


def report_json(reports: dict[str, WorkflowReport], ok: bool, took: float) -> dict[str, Any]:
    return {
        "compatible": ok,
        "checked": sum(r.compatible + len(r.diverging) for r in reports.values()),
        "seconds": round(took, 3),
        "workflows": [
            {
                "workflow_id": r.workflow_id,
                "compatible": r.compatible,
                "diverging": [v.as_json() for v in r.diverging],
            }
            for r in sorted(reports.values(), key=lambda r: r.workflow_id)
        ],
    }


def print_reports(reports: dict[str, WorkflowReport], ok: bool, took: float) -> None:
    console = stdout()
    checked = sum(r.compatible + len(r.diverging) for r in reports.values())
    console.print(f"Checked {checked:,} unfinished runs in {took:.1f}s")
    for r in sorted(reports.values(), key=lambda r: r.workflow_id):
        line = f"  {r.workflow_id}: {r.compatible:,} compatible"
        if r.diverging:
            line += f", [red]{len(r.diverging):,} diverging[/]"
        console.print(line)
        for verdict in r.diverging[:SHOWN]:
            console.print(f"    run {verdict.run_id}: {describe(verdict)}", markup=False)
        if len(r.diverging) > SHOWN:
            console.print(f"    … and {len(r.diverging) - SHOWN:,} more (--json lists them all)")
    console.print("[green]All compatible.[/]" if ok else "[red]Some runs would diverge.[/]")


def describe(verdict: Verdict) -> str:
    """The first diverging step in words: the step asked for and the recorded steps."""
    if verdict.step is None or verdict.detail.startswith("step "):
        return verdict.detail
    return f"step {verdict.step!r}: {verdict.detail}"
