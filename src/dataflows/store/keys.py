"""Wait keys: which waits an event can resolve, and the advisory locks that serialise them.

A wait's *key* is its event name, its filter paths (its *shape*) and its filter values. The
values are stored as canonical JSON text (sorted keys, no spaces, integral floats as integers),
so ``1`` and ``1.0`` find each other, and event intake finds the waits an event resolves by an
index lookup per key instead of testing every wait of the event's name. Intake and waits of
one key serialise on that key's lock (see :mod:`dataflows.store.events`).
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
    """A stable text for filter values, so ``1`` and ``1.0`` find each other."""
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"))


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
    """A wait's event name, filter paths (its shape) and filter values (its key), as stored."""

    event_name: str
    paths: str
    key: str

    @classmethod
    def of(cls, match: WaitMatch) -> WaitShape:
        filters = sorted(match.filters, key=lambda f: f[0])
        return cls(
            match.event_name,
            json.dumps([p for p, _ in filters]),
            canonical([v for _, v in filters]),
        )


def name_lock(event_name: str) -> str:
    """The lock intake holds shared and a wait registering a new shape holds exclusive."""
    return json.dumps(["event", event_name])


def key_lock(event_name: str, paths: str, key: str) -> str:
    """The lock of one wait key: intake and a wait with that key take it exclusive."""
    return json.dumps(["wait", event_name, paths, key])


def wait_keys(
    events: Sequence[NewEvent], shapes: Mapping[str, Sequence[str]]
) -> tuple[list[WaitKeys], list[str]]:
    """Per event, the wait keys (filter paths, filter key) it matches among ``shapes`` (filter
    paths by event name); and the locks of all those keys, sorted."""
    wakes: list[WaitKeys] = []
    locks: set[str] = set()
    for event in events:
        keys: WaitKeys = []
        if shapes.get(event.name):
            data = json.loads(event.data_json)
            for paths in shapes[event.name]:
                found = [lookup(data, path) for path in json.loads(paths)]
                if all(ok for ok, _ in found):
                    keys.append((paths, canonical([value for _, value in found])))
            locks.update(key_lock(event.name, paths, key) for paths, key in keys)
        wakes.append(keys)
    return wakes, sorted(locks)


def wait_output(event_id: str, name: str, data_json: str, ts: float) -> str:
    """What a wait step records: the event that resolved it (``data_json`` as stored)."""
    return (
        f'{{"id": {json.dumps(event_id)}, "name": {json.dumps(name)}, '
        f'"data": {data_json}, "ts": {json.dumps(ts)}}}'
    )
