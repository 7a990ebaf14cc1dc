"""The ``dataflows`` command: run the API and workers, migrate, inspect runs, send events.

Every subcommand lives in its own module; ``APP`` arguments are loaded by
:func:`dataflows.cli.loading.load_app`.
"""

from __future__ import annotations

import click

from dataflows import __version__
from dataflows.cli.dev import dev
from dataflows.cli.loading import AppLoadError, load_app
from dataflows.cli.migrate import migrate
from dataflows.cli.runs import runs
from dataflows.cli.send import send
from dataflows.cli.serve import serve
from dataflows.cli.worker import worker

__all__ = ["AppLoadError", "cli", "load_app", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="dataflows")
def cli() -> None:
    """dataflows: durable workflows on PostgreSQL and SQLite.

    APP is module:attribute or path/to/file.py[:attribute] (default attribute: app, else the
    module's only Dataflows instance); it defaults to $DATAFLOWS_APP.
    """


for command in (dev, serve, worker, migrate, runs, send):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``dataflows`` script."""
    cli(prog_name="dataflows")
