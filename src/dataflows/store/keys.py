"""Wait keys: which waits an event can resolve.

A wait's *key* is its event name, its filter paths (its *shape*) and its filter values, stored as
canonical JSON text so that ``1`` and ``1.0`` find each other, and event intake finds the waits
an event resolves by an index lookup per key instead of testing every wait of the event's name.

The database computes each key, from the values a wait passes as JSON and from the data of the
events it takes in, so a wait and an event always agree on it: on PostgreSQL in SQL
(``canonical_jsonb``, which intake runs under the locks that serialise it with waits), on SQLite
with :func:`canonical`, which the SQLite store registers as the SQL function ``canonical_json``
and its intake program (:mod:`dataflows.store.events`) calls through :func:`wait_keys`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataflows.records import NewEvent, WaitMatch, lookup

#: The wait keys (filter paths, filter key) an event can resolve.
WaitKeys = list[tuple[str, str]]


def canonical(value: Any) -> str:
    """A stable text for filter values (SQLite's keys), so ``1`` and ``1.0`` find each other."""
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"))


def canonical_json(text: str | None) -> str | None:
    """:func:`canonical` of a JSON text: SQLite's SQL function ``canonical_json``."""
    return None if text is None else canonical(json.loads(text))


def _normalize(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class WaitShape:
    """A wait's event name, filter paths (its shape, as stored) and filter values (JSON, in the
    order of the paths), from which the database makes its key."""

    event_name: str
    paths: str
    values: str

    @classmethod
    def of(cls, match: WaitMatch) -> WaitShape:
        filters = sorted(match.filters, key=lambda f: f[0])
        return cls(
            match.event_name,
            json.dumps([p for p, _ in filters]),
            json.dumps([v for _, v in filters]),
        )


def wait_keys(events: Sequence[NewEvent], shapes: Mapping[str, Sequence[str]]) -> list[WaitKeys]:
    """Per event, the wait keys (filter paths, filter key) it matches among ``shapes`` (filter
    paths by event name): SQLite's intake."""
    wakes: list[WaitKeys] = []
    for event in events:
        keys: WaitKeys = []
        if shapes.get(event.name):
            data = json.loads(event.data_json)
            for paths in shapes[event.name]:
                found = [lookup(data, path) for path in json.loads(paths)]
                if all(ok for ok, _ in found):
                    keys.append((paths, canonical([value for _, value in found])))
        wakes.append(keys)
    return wakes


def wait_output(event_id: str, name: str, data_json: str, ts: float) -> str:
    """What a wait step records: the event that resolved it (``data_json`` as stored)."""
    return (
        f'{{"id": {json.dumps(event_id)}, "name": {json.dumps(name)}, '
        f'"data": {data_json}, "ts": {json.dumps(ts)}}}'
    )
