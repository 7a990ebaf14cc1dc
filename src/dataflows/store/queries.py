"""Named SQL blocks loaded from ``sql/<dialect>/queries.sql`` and migrations from ``migrations/``.

A query file holds ``-- name: x`` blocks, the runtime queries, and ``-- fragment: x`` blocks,
SQL that several queries share, written once per dialect: a query says ``{x}`` where the
fragment goes, ``{x r}`` to name its ``runs`` table ``r`` instead, and ``{x r v.lease_token}``
to compare with an expression in place of the fragment's own parameter. Fragments are expanded
once, when the file is loaded, so every query is still one fixed text (prepared once).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_USE = re.compile(r"\{(\w+)(?: (\w+))?(?: ([\w.]+))?\}")
#: In a fragment: the runs table's name, and the lease token compared with.
_TABLE = re.compile(r"\bruns\.")
_PARAMETER = re.compile(r"(lease_token = )(%\(lease_token\)s|:lease_token)")


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """Every ``-- name: x`` block of the dialect's query file, by name, fragments expanded."""
    blocks = _blocks(dialect)
    fragments = blocks["fragment"]
    return {name: _expand(body, fragments) for name, body in blocks["name"].items()}


def load_fragments(dialect: str) -> list[str]:
    """The names of the dialect's fragments (both dialects define the same ones)."""
    return list(_blocks(dialect)["fragment"])


@cache
def _blocks(dialect: str) -> dict[str, dict[str, str]]:
    """The query file's blocks by kind (``name``, ``fragment``) and name, as written."""
    text = _sql_dir(dialect).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _BLOCK.split(text)
    blocks: dict[str, dict[str, str]] = {"name": {}, "fragment": {}}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if name in blocks[kind]:
            raise ValueError(f"{kind} {name!r} is defined twice for {dialect}")
        blocks[kind][name] = _without_comments(body) if kind == "fragment" else body.strip()
    return blocks


def _expand(body: str, fragments: dict[str, str]) -> str:
    def use(found: re.Match[str]) -> str:
        name, table, token = found.groups()
        if name not in fragments:
            return found[0]  # not a fragment: a placeholder the backend fills in
        text = fragments[name]
        if table:
            text = _TABLE.sub(f"{table}.", text)
        if token:
            text = _PARAMETER.sub(lambda m: m[1] + token, text)
        return text

    return _USE.sub(use, body)


def _without_comments(body: str) -> str:
    lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
    return " ".join(line.strip() for line in lines)


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
