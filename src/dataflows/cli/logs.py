"""Log output of the long-running commands on stderr: readable lines, or one JSON object a line.

``--log-format json`` (or ``DATAFLOWS_LOG_FORMAT=json``) prints each record as ``{"ts", "level",
"logger", "message"}`` plus, when the line is about a run, ``run_id``, ``workflow_id``,
``step_key``, ``attempt`` and ``error``: the engine passes them with its lines, and a line logged
inside a step function gets them from the step it runs in.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.logging import RichHandler

from dataflows.cli.common import stderr
from dataflows.context import LOG_FIELDS, log_fields, step_context

F = TypeVar("F", bound=Callable[..., Any])

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
FORMAT_ENV = "DATAFLOWS_LOG_FORMAT"
#: Read by the server processes ``dataflows serve --workers N`` starts (set by the command).
LEVEL_ENV = "DATAFLOWS_LOG_LEVEL"


def log_level_option(fn: F) -> F:
    fn = click.option(
        "--log-format",
        type=click.Choice(FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        envvar=FORMAT_ENV,
        help=f"Log lines as text, or as one JSON object each (${FORMAT_ENV}).",
    )(fn)
    return click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        help="Least severe log messages shown.",
    )(fn)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Send every log record (the engine's, uvicorn's, the commands') to stderr."""
    handler: logging.Handler
    if log_format.lower() == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(
            console=stderr(),
            show_path=False,
            markup=False,
            rich_tracebacks=False,
            log_time_format="[%X]",
        )
    logging.basicConfig(level=level.upper(), format="%(message)s", handlers=[handler], force=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    the run's fields when the line is about a run, and ``exception`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_run_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _run_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {name: getattr(record, name) for name in LOG_FIELDS if hasattr(record, name)}
    if not fields:
        step = step_context()  # a line logged by a step function: the step it runs in
        if step is not None:
            fields = log_fields(step.run_id, step.workflow_id, step.step_key, step.attempt)
    return fields
