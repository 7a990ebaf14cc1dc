"""Runs and steps as JSON (ISO times) and as rich tables for a terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from dataflows.durations import format_duration
from dataflows.http.views import run_detail, run_summary
from dataflows.models import Run, StepInfo, error_line

STATUS_STYLES = {
    "queued": "cyan",
    "running": "bold blue",
    "waiting": "yellow",
    "retrying": "yellow",
    "completed": "green",
    "timed_out": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
}


# -- JSON ------------------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def runs_json(runs: Sequence[Run]) -> dict[str, Any]:
    """``runs list --json``: the runs as ``GET /runs`` lists them."""
    return {"runs": [run_summary(run) for run in runs]}


def run_json(run: Run) -> dict[str, Any]:
    """``runs show --json``: the run as ``GET /runs/{id}`` returns it, plus the timeline's offsets:
    ``duration_seconds`` of the run and each step's ``start_offset_seconds`` from the run's start."""
    value = run_detail(run)
    value["duration_seconds"] = run_duration(run)
    for view, step in zip(value["steps"], run.steps, strict=True):
        view["start_offset_seconds"] = offset(step, run.created_at)
    return value


def run_duration(run: Run) -> float | None:
    if run.completed_at is None:
        return None
    return (run.completed_at - run.created_at).total_seconds()


def offset(step: StepInfo, origin: datetime) -> float | None:
    return None if step.started_at is None else (step.started_at - origin).total_seconds()


# -- text ------------------------------------------------------------------------------------------


def status_text(status: str) -> Text:
    return Text(status.replace("_", " "), style=STATUS_STYLES.get(status, ""))


def local_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def human_duration(seconds: float | None) -> str:
    """``850 ms``, ``2.40 s``, ``3m 05s``, ``2h 03m``, ``4d 02h``; empty for no duration."""
    return "" if seconds is None else format_duration(seconds)


def full_error(error: dict[str, Any]) -> str:
    """``Type: message`` with every line of the message (one-line places use ``error_line``)."""
    kind, message = error.get("type", "Error"), str(error.get("message", "")).strip()
    return f"{kind}: {message}" if message else str(kind)


def clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_table(runs: Sequence[Run]) -> Table:
    table = Table(title=None, header_style="bold", pad_edge=False, box=None)
    table.add_column("RUN", no_wrap=True)
    table.add_column("WORKFLOW", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    for run in runs:
        detail = error_line(run.error) if run.status == "failed" else (run.wait_reason or "")
        table.add_row(
            run.id,
            run.workflow_id,
            status_text(run.status),
            local_time(run.created_at),
            human_duration(run_duration(run)),
            clip(detail, 80),
        )
    return table


def run_view(run: Run, *, traceback: bool = False) -> RenderableType:
    """``runs show``: the run's header, its step timeline, its error, input and result."""
    parts: list[RenderableType] = [_header(run), Text()]
    parts.append(steps_table(run) if run.steps else Text("No steps recorded yet.", style="dim"))
    if run.error:
        parts += [Text(), Text("Error", style="bold red"), Text(full_error(run.error), style="red")]
        step = run.error.get("step")
        if step:
            parts.append(Text(f"in step {step}", style="red"))
        if traceback and run.error.get("traceback"):
            parts.append(Text(str(run.error["traceback"]).rstrip(), style="dim"))
    parts += [Text(), Text("Input", style="bold"), JSON(dumps(run.event.data))]
    if run.status == "completed":
        parts += [Text(), Text("Result", style="bold"), JSON(dumps(run.result))]
    return Group(*parts)


def _header(run: Run) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    status = status_text(run.status)
    if run.wait_reason and run.status in ("waiting", "queued"):
        status.append(f"  {run.wait_reason}", style="")
        if run.wake_at is not None:
            status.append(f" until {local_time(run.wake_at)}", style="")
    rows: list[tuple[str, str | Text]] = [
        ("Run", run.id),
        ("Workflow", run.workflow_id),
        ("Version", run.version or "-"),
        ("Status", status),
        ("Event", f"{run.event.name}  ({run.event.id})"),
        ("Created", local_time(run.created_at)),
    ]
    if run.completed_at is not None:
        took = human_duration(run_duration(run))
        rows.append(("Finished", f"{local_time(run.completed_at)}  (after {took})"))
    if run.recoveries:
        rows.append(("Recoveries", str(run.recoveries)))
    if run.parent_run_id:
        rows.append(("Parent run", run.parent_run_id))
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def steps_table(run: Run) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("STEP", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right")
    table.add_column("START", justify="right", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    for number, step in enumerate(run.steps, 1):
        start = offset(step, run.created_at)
        table.add_row(
            str(number),
            step.key,
            step.kind,
            status_text(step.status),
            str(step.attempts) if step.attempts else "",
            "" if start is None else f"+{human_duration(start)}",
            human_duration(step.duration),
            _step_detail(step),
        )
        for line in attempt_lines(step):
            table.add_row("", "", "", "", "", "", "", line)
    return table


def attempt_lines(step: StepInfo) -> list[Text]:
    """Under a step that failed at least once: each failed attempt, then how the last one went."""
    if not step.attempt_errors:
        return []
    lines: list[Text] = []
    for failed in step.attempt_errors:
        line = Text(f"attempt {failed.attempt} failed: ", style="red")
        line.append(clip(error_line(failed.error), 80), style="")
        if failed.retry_at is not None and failed.failed_at is not None:
            wait = (failed.retry_at - failed.failed_at).total_seconds()
            line.append(f"  (retry after {human_duration(wait)})", style="dim")
        lines.append(line)
    if step.status == "completed":
        lines.append(Text(f"attempt {step.attempts} succeeded", style="green"))
    return lines


def _step_detail(step: StepInfo) -> str:
    if step.status in ("waiting", "retrying") and step.wake_at is not None:
        return f"until {local_time(step.wake_at)}"  # a retrying step's errors are listed below
    if step.error:
        return clip(error_line(step.error), 80)
    if step.status == "completed" and step.output is not None:
        return clip(json.dumps(step.output, ensure_ascii=False), 60)
    return ""
