"""The ``dataflows`` command: run the API and workers, migrate, inspect runs and schedules, send
events.

Every subcommand lives in its own module, imported only when that subcommand runs: ``dataflows
--help`` and ``--version`` load neither the engine nor the HTTP server. ``APP`` arguments are
loaded by :func:`dataflows.cli.loading.load_app`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

from dataflows import __version__
from dataflows.errors import MissingExtra
from dataflows.extras import needed_for, require

if TYPE_CHECKING:
    from dataflows.cli.loading import AppLoadError, load_app

__all__ = ["AppLoadError", "cli", "load_app", "main"]

#: name -> (module:attribute of the command, the line ``dataflows --help`` shows for it, the extra
#: it needs beyond the base install). The help lines are tested against the commands' docstrings.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "check": (
        "dataflows.cli.check:check",
        "Replay every unfinished run against APP's code, calling no step function.",
        None,
    ),
    "dev": (
        "dataflows.cli.dev:dev",
        "Run APP's HTTP API and a worker in one process (SQLite unless the app says otherwise).",
        "server",
    ),
    "migrate": (
        "dataflows.cli.migrate:migrate",
        "Apply pending migrations to the database.",
        None,
    ),
    "runs": ("dataflows.cli.runs:runs", "Inspect, cancel and retry runs.", None),
    "schedules": (
        "dataflows.cli.schedules:schedules",
        "List, pause and resume schedules (cron triggers).",
        None,
    ),
    "send": (
        "dataflows.cli.send:send",
        "Send an event: store it and start the workflows of APP it triggers.",
        None,
    ),
    "serve": (
        "dataflows.cli.serve:serve",
        "Serve APP's HTTP API (no worker: run `dataflows worker` for that).",
        "server",
    ),
    "worker": (
        "dataflows.cli.worker:worker",
        "Run a worker that executes APP's runs until SIGTERM or Ctrl-C.",
        None,
    ),
}

#: Exit status of a command whose optional dependencies are not installed (a usage error).
MISSING_EXTRA_EXIT = 2


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        try:
            return load_command(cmd_name)
        except MissingExtra as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(MISSING_EXTRA_EXIT)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing comes from COMMANDS, so --help imports no subcommand.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help) for name, (_, help, _) in sorted(COMMANDS.items())])


def load_command(name: str) -> click.Command:
    """Import the subcommand ``name``; :class:`MissingExtra` if it needs an extra not installed."""
    target, _, extra = COMMANDS[name]
    if extra is not None:
        require(extra, f"dataflows {name}")
    module_name, _, attribute = target.partition(":")
    with needed_for(f"dataflows {name}"):
        module = importlib.import_module(module_name)
    command = getattr(module, attribute)
    assert isinstance(command, click.Command)
    return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="dataflows")
def cli() -> None:
    """dataflows: durable workflows on PostgreSQL and SQLite.

    APP is module:attribute or path/to/file.py[:attribute] (default attribute: app, else the
    module's only Dataflows instance); it defaults to $DATAFLOWS_APP.
    """


def __getattr__(name: str) -> Any:
    # AppLoadError and load_app import the engine; they load on first use, not with the CLI.
    if name in ("AppLoadError", "load_app"):
        return getattr(importlib.import_module("dataflows.cli.loading"), name)
    raise AttributeError(f"module 'dataflows.cli' has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``dataflows`` script."""
    cli(prog_name="dataflows")
