"""Named SQL blocks loaded from ``sql/<dialect>/queries.sql`` and migrations from ``migrations/``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """Every ``-- name: x`` block of the dialect's query file, by name."""
    text = _sql_dir(dialect).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice for {dialect}")
        queries[name] = body.strip()
    return queries


def load_migrations(dialect: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for each numbered migration file, in order."""
    folder = _sql_dir(dialect).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found)


def _sql_dir(dialect: str) -> resources.abc.Traversable:
    return resources.files("dataflows.store").joinpath("sql", dialect)
