"""How a store operation is written once for every SQL dialect: as a *program*.

A program is a generator that yields :class:`Query` values (a named block of
``sql/<dialect>/queries.sql`` and its parameters) and receives each one's answer; a backend runs
the whole program inside one transaction. The logic of an operation lives in the module named
after its noun (``runs``, ``leases``, ``steps``, ``waits``, ``events``), the SQL in the query
files, and the backends only move rows.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

#: What a query answers: nothing, its first row, all rows, or how many rows it changed.
Fetch = Literal["none", "one", "all", "rowcount"]


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    params: dict[str, Any]
    fetch: Fetch = "none"


#: Yielded to ask the backend to wake workers once the transaction commits.
NOTIFY = Query("notify_work", {})

Program = Generator[Query, Any, Any]


def single(query: Query) -> Program:
    """The program of one statement."""
    result = yield query
    return result


def json_column(value: Any) -> Any:
    """Decode a JSON column: text on SQLite, already decoded for ``jsonb`` on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value
