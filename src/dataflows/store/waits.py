"""Waits: a run reaches a sleep or an event wait, and an event already stored may resolve it.

A wait's deadline is stored the first time it is reached and never moved. An event wait is
resolved by the oldest matching event received since the run was created that no earlier step
of the run consumed; an event arriving later resolves it at intake
(:mod:`dataflows.store.events`). The two serialise on the wait key's lock, so neither misses
the other.
"""

from __future__ import annotations

import json
from typing import Any

from dataflows.records import Lease, NewStep, NewWait, StoredEvent, WaitMatch, WaitOutcome
from dataflows.store.keys import WaitShape, wait_output
from dataflows.store.program import Program, Query, json_column
from dataflows.store.steps import load_history, record_step

#: Candidate events read per query while searching for the one that resolves a wait.
EVENT_BATCH = 500


def begin_wait(lease: Lease, wait: NewWait, now: float) -> Program:
    """Reach a sleep or event wait (fenced): ``resolved``, ``pending`` or ``fenced``."""
    key, kind, wake_at, match = wait.key, wait.kind, wait.wake_at, wait.match
    shape = None if match is None else WaitShape.of(match)
    shape_known = True
    if shape is not None:
        shape_known = yield from _lock_wait(shape)
    state = yield Query(
        "wait_state", {"run_id": lease.run_id, "lease_token": lease.token, "key": key}, "one"
    )
    if state is None:
        return WaitOutcome("fenced")
    if state["recorded"]:
        return (yield from _recorded_wait(lease.run_id, key))
    if state["created_at"] is None:  # reached for the first time
        if shape is not None and not shape_known:
            yield Query(
                "insert_wait_shape", {"event_name": shape.event_name, "filter_paths": shape.paths}
            )
        yield _insert_wait(lease.run_id, wait, shape, now)
        deadline, started, after = wake_at, now, 0
    else:
        # A sleep's duration runs from when it was reached; events that can resolve the wait
        # came after it was registered.
        deadline, started, after = state["wake_at"], state["created_at"], state["after_seq"]
    if match is not None:
        event = yield from _find_event(lease.run_id, wait, after)
        if event is not None:
            output = wait_output(event.id, event.name, json.dumps(event.data), event.ts)
            step = NewStep(key, kind, "completed", output, None, 1, started, event.id)  # type: ignore[arg-type]
            yield from record_step(lease, step, now)
            return WaitOutcome("resolved", event=event)
    if deadline is not None and now >= deadline:
        step = NewStep(key, kind, "completed", "null", None, 1, started)  # type: ignore[arg-type]
        yield from record_step(lease, step, now)
        return WaitOutcome("resolved")
    return WaitOutcome("pending", wake_at=deadline)


def _lock_wait(shape: WaitShape) -> Program:
    """Serialise with the intake of the events that can resolve this wait: whichever commits
    second sees the other (PostgreSQL takes the lock of the wait's key, or of its event name if
    the shape is new; SQLite serialises every writer). Whether the shape is registered already."""
    row = yield Query(
        "lock_wait",
        {
            "event_name": shape.event_name,
            "filter_paths": shape.paths,
            "filter_values": shape.values,
        },
        "one",
    )
    return bool(row["known"])


def _recorded_wait(run_id: str, key: str) -> Program:
    """The outcome already recorded: a retry of a call whose commit went through unanswered."""
    for row in (yield from load_history(run_id)):
        if row.key == key and row.event_id is not None:
            out = row.output
            return WaitOutcome(
                "resolved", StoredEvent(out["id"], out["name"], out["data"], out["ts"])
            )
    return WaitOutcome("resolved")


def _insert_wait(run_id: str, wait: NewWait, shape: WaitShape | None, now: float) -> Query:
    return Query(
        "insert_wait",
        {
            "run_id": run_id,
            "key": wait.key,
            "kind": wait.kind,
            "wake_at": wait.wake_at,
            "event_name": None if shape is None else shape.event_name,
            "filter_paths": None if shape is None else shape.paths,
            "filter_values": None if shape is None else shape.values,
            "now": now,
        },
    )


def _find_event(run_id: str, wait: NewWait, after: int) -> Program:
    """The first stored event after sequence number ``after`` that resolves ``wait`` (which
    waits for an event), if any."""
    match, since, trigger_event_id = wait.match, wait.since, wait.trigger_event_id
    assert match is not None
    while True:
        rows = yield Query(
            "candidate_events",
            {
                "event_name": match.event_name,
                "since": since,
                "after_seq": after,
                "own_event_id": trigger_event_id,
                "run_id": run_id,
                "containment": _containment(match),
                "batch": EVENT_BATCH,
            },
            "all",
        )
        for row in rows:
            data = json_column(row["data"])
            if match.matches(row["name"], data):
                return StoredEvent(row["id"], row["name"], data, row["ts"])
            after = row["seq"]
        if len(rows) < EVENT_BATCH:
            return None


def _containment(match: WaitMatch) -> str:
    """A ``jsonb`` containment document prefiltering candidate events on PostgreSQL."""
    doc: dict[str, Any] = {}
    for path, value in match.filters:
        node = doc
        parts = path.split(".")[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict | list):
            continue  # containment is looser than equality for these; checked in Python
        node[parts[-1]] = value
    return json.dumps(doc)
