"""What the commands share: the APP argument, store options, running a client call, consoles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from dataflows.app import Dataflows
from dataflows.cli.loading import load_app_for_command
from dataflows.errors import (
    DatabaseRejected,
    DatabaseUnreachable,
    DataflowsError,
    InvalidDatabaseURL,
    MissingExtra,
    StoreError,
    StoreUnavailable,
)
from dataflows.store import create_store, database_url, redact_password

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Default for APP arguments, and what ``dataflows serve`` hands its server processes.
APP_ENV = "DATAFLOWS_APP"
#: How long a command waits for PostgreSQL's first answer at start: with interpreter start-up,
#: a command whose database is down or unreachable ends within about two seconds.
STARTUP_CONNECT_TIMEOUT = 1.5


class SetupError(click.ClickException):
    """The command cannot work with what it was given: its database URL, the database itself."""

    exit_code = 2


def app_argument(*, required: bool) -> Callable[[F], F]:
    """``APP``: ``module:attribute`` or ``path/to/file.py``; defaults to ``$DATAFLOWS_APP``."""
    metavar = "APP" if required else "[APP]"
    return click.argument("app_spec", metavar=metavar, required=required, envvar=APP_ENV)


def listen_options(fn: F) -> F:
    """``--host`` and ``--port`` for the commands that serve the API."""
    fn = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8000,
        show_default=True,
        help="Port (0: any free port).",
    )(fn)
    return click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Interface to listen on (0.0.0.0: all).",
    )(fn)


def dashboard_option(fn: F) -> F:
    """``--no-dashboard``: serve the API without the web dashboard at ``/``."""
    return click.option(
        "--dashboard/--no-dashboard",
        default=True,
        show_default=True,
        help="Serve the web dashboard at / (see docs/dashboard.md).",
    )(fn)


def store_options(fn: F) -> F:
    """``--database-url`` and ``--schema``, for the commands that only need the store."""
    fn = click.option(
        "--schema",
        default=None,
        help="PostgreSQL schema of dataflows' tables.  [default: the app's, else dataflows]",
    )(fn)
    return click.option(
        "--database-url",
        default=None,
        metavar="URL",
        help="postgresql://… or sqlite:///path.  [default: the app's, else "
        "$DATAFLOWS_DATABASE_URL, else sqlite:///.dataflows/dataflows.db]",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


def client_app(spec: str | None, database_url: str | None, schema: str | None) -> Dataflows:
    """The app named by ``spec`` with the store options applied, or a bare client app."""
    if spec is None:
        app = Dataflows(database_url, schema=schema or "dataflows")
    else:
        app = load_app_for_command(spec)
        if database_url is not None:
            app.database_url = database_url
        if schema is not None:
            app.schema = schema
    with friendly_errors():
        store_url(app)  # a malformed URL is reported before anything else
    return app


def start_app(spec: str, *, check: bool = True) -> Dataflows:
    """APP for a long-running command, with its database checked unless ``check`` is false."""
    app = load_app_for_command(spec)
    if check:
        check_database(app)
    return app


def check_database(app: Dataflows) -> None:
    """Connect to the app's database once and disconnect.

    A malformed URL, a database that does not exist, credentials the server rejects and a server
    that is down or does not answer within :data:`STARTUP_CONNECT_TIMEOUT` end the command here,
    in one line with exit code 2, instead of a worker retrying something that cannot work. A
    database that goes away later is waited out by the commands that run for long.
    """

    async def connect() -> None:
        store = create_store(
            app.database_url, schema=app.schema, connect_timeout=STARTUP_CONNECT_TIMEOUT
        )
        try:
            await store.open(migrate=False)
        finally:
            await store.close()

    with friendly_errors(), _quiet("psycopg.pool"):
        asyncio.run(connect())


def store_url(app: Dataflows) -> str:
    """The URL the app's store uses (the same precedence as :func:`~dataflows.store.create_store`)."""
    return database_url(app.database_url)


def display_url(url: str) -> str:
    """``url`` without its password; SQLite files with their absolute path."""
    if url.startswith("sqlite:"):
        from dataflows.store.sqlite import sqlite_path

        path = sqlite_path(url)
        return url if path == ":memory:" else f"sqlite:///{Path(path).resolve()}"
    return redact_password(url)


def require_existing_sqlite(app: Dataflows) -> None:
    """Refuse to create an empty SQLite file for a command that only reads runs."""
    url = store_url(app)
    if not url.startswith("sqlite:"):
        return
    from dataflows.store.sqlite import sqlite_path

    path = sqlite_path(url)
    if path != ":memory:" and not Path(path).exists():
        raise SetupError(
            f"no database at {path}: pass --database-url or APP, or set DATAFLOWS_DATABASE_URL"
        )


def run_client(app: Dataflows, call: Callable[[Dataflows], Awaitable[T]]) -> T:
    """Run one client call on ``app`` and close it; store and input errors become one line.

    The database is checked first (:func:`check_database`), so a command does not wait long for
    a server that is not there.
    """
    check_database(app)

    async def go() -> T:
        try:
            return await call(app)
        finally:
            await app.close()

    with friendly_errors(), _quiet("psycopg.pool"):
        return asyncio.run(go())


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hide a logger's warnings for a one-shot command: the pool's warning about each failed
    connection attempt would bury the one-line error that follows."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn what a user can fix into one line: a database problem exits 2, the rest 1.

    Database problems: a malformed URL, a database that does not exist, rejected credentials, a
    server that is down, a file that is not a database, a PostgreSQL URL without the
    ``dataflows-engine[postgres]`` extra. The rest: an unknown run, a run in the
    wrong state, an invalid event name.
    """
    try:
        yield
    except (InvalidDatabaseURL, DatabaseRejected, DatabaseUnreachable, MissingExtra) as exc:
        raise SetupError(str(exc)) from None  # each says what is wrong in its own words
    except StoreUnavailable as exc:
        raise SetupError(f"database unreachable: {exc}") from None
    except StoreError as exc:  # e.g. "file is not a database"
        raise SetupError(f"cannot use the database: {exc}") from None
    except DataflowsError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:  # a malformed schema name, an invalid event name …
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # e.g. a SQLite file in a folder that cannot be created
        raise SetupError(f"cannot open the database: {exc}") from None


def stdout() -> Console:
    """A console on stdout; wide when it is not a terminal, so piped output is not cut."""
    return _console(stderr=False)


def stderr() -> Console:
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=200)
    return console
