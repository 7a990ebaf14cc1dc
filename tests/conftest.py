"""Shared fixtures: a fresh PostgreSQL database per session, a fresh schema per test, SQLite files.

PostgreSQL is never skipped: if no server can be found or started, the tests that need it error.
See tests/pg.py for how the server is chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.private_pg import PrivatePostgres
from tests.pg import (
    DbTarget,
    PgServer,
    create_database,
    create_schema,
    drop_database,
    drop_schema,
    resolve_server,
)

_server: PgServer | None = None
_server_error: Exception | None = None


def _get_server() -> PgServer:
    """Resolve (and maybe start) the server once per process; remember a failure too."""
    global _server, _server_error
    if _server is None and _server_error is None:
        try:
            _server = resolve_server()
        except Exception as exc:  # reported in the header, raised by the fixtures
            _server_error = exc
    if _server_error is not None:
        raise RuntimeError(f"no PostgreSQL for the tests: {_server_error}") from _server_error
    assert _server is not None
    return _server


def pytest_report_header(config: pytest.Config) -> str:
    try:
        server = _get_server()
    except RuntimeError as exc:
        return f"dataflows postgres: UNAVAILABLE ({exc})"
    return f"dataflows postgres: {server.version} via {server.source}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Repeated at the end because -q hides the header, and CI logs should say which server ran.
    if _server is not None:
        terminalreporter.write_line(f"dataflows postgres: {_server.version} via {_server.source}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a database created for this test session and dropped at its end."""
    try:
        server = _get_server()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)  # an error, never a skip
    url = create_database(server.url)
    yield url
    drop_database(server.url, url)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[DbTarget]:
    """The session database plus a schema of this test's own (created empty, dropped CASCADE)."""
    schema = create_schema(pg_server_url)
    yield DbTarget(url=pg_server_url, schema=schema)
    drop_schema(pg_server_url, schema)


@pytest.fixture
def sqlite_target(tmp_path: Path) -> DbTarget:
    return DbTarget(url=f"sqlite:///{tmp_path / 'dataflows.db'}", schema=None)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> DbTarget:
    """Runs the test once per backend (ids `sqlite`, `postgres`); PostgreSQL is set up lazily."""
    name = "pg_url" if request.param == "postgres" else "sqlite_target"
    target: DbTarget = request.getfixturevalue(name)
    return target


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, which it may stop and start (never the shared one)."""
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()
