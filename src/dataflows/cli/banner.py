"""The summary a long-running command prints when it starts."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from dataflows.app import Dataflows
from dataflows.cli.common import display_url, store_url


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
    return text if text.plain else Text("none registered", style="yellow")


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
