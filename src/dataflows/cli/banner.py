"""The summary a long-running command prints when it starts."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from dataflows.app import Dataflows
from dataflows.cli.common import display_url, store_url
from dataflows.workflow import Workflow


def trigger_names(app: Dataflows) -> list[str]:
    """Every event name (or pattern) a workflow of the app is triggered by."""
    names: list[str] = []
    for workflow in app.registry:
        for trigger in workflow.triggers:
            name = getattr(trigger, "name", None)
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def workflows_text(app: Dataflows) -> Text:
    text = Text()
    for number, workflow in enumerate(app.registry):
        if number:
            text.append("\n")
        text.append(workflow.id, style="bold")
        triggers = [getattr(t, "name", None) or str(t) for t in workflow.triggers]
        text.append(f"  on {', '.join(triggers)}" if triggers else "  (started directly)", "dim")
        limits = limits_text(workflow)
        if limits:
            text.append(f"  [{limits}]", "dim")
    return text if text.plain else Text("none registered", style="yellow")


def limits_text(workflow: Workflow) -> str:
    """The workflow's flow-control options in brief (``concurrency 2 by data.shop, throttle
    10 per 60s by data.shop``), "" without any. Keys show as paths or function names (``<lambda>``)."""
    parts: list[str] = []
    if workflow.concurrency is not None:
        parts.append(f"concurrency {workflow.concurrency.limit}{_per(workflow.concurrency.key)}")
    if workflow.throttle is not None:
        period = _seconds(workflow.throttle_period)
        parts.append(
            f"throttle {workflow.throttle.limit} per {period}{_per(workflow.throttle.key)}"
        )
    if workflow.rate_limit is not None:
        period = _seconds(workflow.rate_period)
        key = _per(workflow.rate_limit.key)
        parts.append(f"rate_limit {workflow.rate_limit.limit} per {period}{key}")
    if workflow.debounce is not None and workflow.debounce_periods is not None:
        wait, max_wait = workflow.debounce_periods
        most = "" if max_wait is None else f" (max {_seconds(max_wait)})"
        parts.append(f"debounce {_seconds(wait)}{most}{_per(workflow.debounce.key)}")
    if workflow.idempotency is not None:
        parts.append(f"idempotency{_per(workflow.idempotency)}")
    if workflow.start_timeout is not None:
        parts.append(f"start_timeout {_seconds(workflow.start_timeout)}")
    return ", ".join(parts)


def _per(key: object) -> str:
    if key is None:
        return ""
    return f" by {getattr(key, '__name__', type(key).__name__) if callable(key) else key}"


def _seconds(value: float | None) -> str:
    return f"{value:g}s"


def database_text(app: Dataflows) -> str:
    url = store_url(app)
    shown = display_url(url)
    return shown if url.startswith("sqlite:") else f"{shown}  (schema {app.schema})"


def summary(title: str, rows: Sequence[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.title = title
    grid.title_justify = "left"
    grid.title_style = "bold"
    grid.add_column(style="cyan", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid
