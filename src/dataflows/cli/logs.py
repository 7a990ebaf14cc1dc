"""Log output of the long-running commands: readable lines on stderr."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.logging import RichHandler

from dataflows.cli.common import stderr

F = TypeVar("F", bound=Callable[..., Any])

LEVELS = ("debug", "info", "warning", "error")


def log_level_option(fn: F) -> F:
    return click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        help="Least severe log messages shown.",
    )(fn)


def setup_logging(level: str) -> None:
    """Send every log record (the engine's, uvicorn's, the commands') to stderr through rich."""
    handler = RichHandler(
        console=stderr(),
        show_path=False,
        markup=False,
        rich_tracebacks=False,
        log_time_format="[%X]",
    )
    logging.basicConfig(level=level.upper(), format="%(message)s", handlers=[handler], force=True)
