"""The pytest plugin of dataflows: the ``dataflows_env`` fixture.

pytest loads it by itself wherever dataflows is installed (the ``pytest11`` entry point). The
fixture is an :class:`~dataflows.testing.Environment` for one test (see
:func:`dataflows.testing.environment`). It finds the app to test in, first, the test's
``@pytest.mark.dataflows(app=...)`` marker (on the test, its class or its module), else a
``dataflows_app`` fixture the project defines (in conftest.py). The marker also takes the other
options of :func:`~dataflows.testing.environment` (``database_url``, ``schema``, ``start``,
``concurrency``, ``timeout``). The database defaults to SQLite in a temporary directory; the
``--dataflows-database-url`` option (or the ``dataflows_database_url`` ini setting) runs every
test on PostgreSQL instead, each in a schema of its own dropped afterwards.

The fixture is async: it needs pytest-asyncio (``pip install 'dataflows-engine[testing]'``), and
tests that use it are ``async def`` (marked ``@pytest.mark.asyncio`` unless ``asyncio_mode =
"auto"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

MARKER = "dataflows"
OPTION = "dataflows_database_url"
OPTIONS = ("app", "database_url", "schema", "start", "concurrency", "timeout")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dataflows", "dataflows testing environment (dataflows_env)")
    group.addoption(
        "--dataflows-database-url",
        dest=OPTION,
        default=None,
        help="run the dataflows_env fixture on this PostgreSQL database, a fresh schema per "
        "test, instead of SQLite in a temporary directory",
    )
    parser.addini(OPTION, "default of --dataflows-database-url", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(app=None, *, database_url=None, schema=None, start=None, concurrency=10, "
        "timeout=10.0): the app the dataflows_env fixture runs, and its options",
    )


def marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``dataflows`` markers' options, the closest marker winning (test, class, module)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if len(marker.args) > 1:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes the app as its only argument")
        unknown = set(marker.kwargs) - set(OPTIONS)
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(OPTIONS)}"
            )
        options.update(marker.kwargs)
        if marker.args:
            options["app"] = marker.args[0]
    return options


@pytest.fixture
def dataflows_app() -> Any:
    """The app ``dataflows_env`` runs: define a fixture of this name in your conftest.py."""
    pytest.fail(
        "dataflows_env needs the app to test: define a `dataflows_app` fixture returning it "
        "(in conftest.py), or mark the test with @pytest.mark.dataflows(app=your_app)",
        pytrace=False,
    )


async def _environment(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    from dataflows.testing.environment import environment

    options = marker_options(request)
    app = options.pop("app", None)
    if app is None:
        app = request.getfixturevalue("dataflows_app")
    from dataflows.app import Dataflows

    if not isinstance(app, Dataflows):
        pytest.fail(f"dataflows_env needs a dataflows.Dataflows app, not {app!r}", pytrace=False)
    if options.get("database_url") is None:
        options["database_url"] = (
            request.config.getoption(OPTION) or request.config.getini(OPTION) or None
        )
    async with environment(app, **options) as env:
        yield env


def _env_fixture() -> Any:
    try:
        import pytest_asyncio
    except ImportError:  # the fixture says what is missing when a test asks for it

        def missing() -> None:
            pytest.fail(
                "dataflows_env is an async fixture: install pytest-asyncio "
                "(pip install 'dataflows-engine[testing]')",
                pytrace=False,
            )

        return pytest.fixture(name="dataflows_env")(missing)
    return pytest_asyncio.fixture(_environment, name="dataflows_env", loop_scope="function")


#: ``dataflows_env``: an :class:`~dataflows.testing.Environment` running the app under test.
dataflows_env = _env_fixture()
