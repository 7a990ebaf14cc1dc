"""The optional parts of the install, and the error that names the one a feature is missing.

The base ``dataflows-engine`` runs workflows on SQLite and the command line. PostgreSQL needs
``dataflows-engine[postgres]`` and the HTTP API ``dataflows-engine[server]``; ``[all]`` brings
both. Code that imports an optional library does so inside :func:`needed_for`, so a user who
lacks it gets one sentence naming the extra instead of ``No module named 'psycopg'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from dataflows.errors import MissingExtra

#: extra -> (what it brings, the top-level modules it installs that dataflows imports)
EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "postgres": ("the PostgreSQL driver", frozenset({"psycopg", "psycopg_pool"})),
    "server": ("the HTTP server", frozenset({"starlette", "uvicorn"})),
}


@contextlib.contextmanager
def needed_for(feature: str) -> Iterator[None]:
    """Turn an import of a missing optional library inside the block into :class:`MissingExtra`.

    ``feature`` starts the message: ``needed_for("dataflows serve")`` gives "dataflows serve needs
    the HTTP server: pip install 'dataflows-engine[server]'". Other import errors propagate.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        extra = extra_providing(exc.name or "")
        if extra is None:
            raise
        raise MissingExtra(feature, extra, EXTRAS[extra][0]) from exc


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` now if a module of ``extra`` is not installed.

    For code that imports the extra's modules only later (a server starting), so the user hears
    about it before anything else happens. Nothing is imported.
    """
    what, modules = EXTRAS[extra]
    if any(importlib.util.find_spec(module) is None for module in sorted(modules)):
        raise MissingExtra(feature, extra, what)


def extra_providing(module: str) -> str | None:
    """The extra that installs ``module`` (or its top-level package), if any."""
    top = module.partition(".")[0]
    return next((extra for extra, (_, modules) in EXTRAS.items() if top in modules), None)
