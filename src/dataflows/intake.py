"""Turning an event into what the store keeps: the event row and the runs it triggers."""

from __future__ import annotations

import uuid
from typing import Any

from dataflows.records import EventIntake, NewEvent, NewRun
from dataflows.serialization import check_event_data
from dataflows.workflow import INTERNAL_PREFIX, Registry


def new_id() -> str:
    return uuid.uuid4().hex


def validate_event_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
        raise ValueError(f"invalid event name {name!r}: a printable string of 1 to 200 characters")
    return name


def event_intake(
    registry: Registry, name: str, data: Any, *, event_id: str | None, now: float, limit: int
) -> EventIntake:
    """Validate an event and pair it with a new run for every workflow it triggers."""
    validate_event_name(name)
    if name.startswith(INTERNAL_PREFIX):
        # Only the engine may speak for itself: a forged run.finished would resolve an invoke.
        raise ValueError(f"event names starting with {INTERNAL_PREFIX!r} are reserved")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 200):
        raise ValueError(f"invalid event id {event_id!r}: a string of 1 to 200 characters")
    event = NewEvent(event_id or new_id(), name, check_event_data(data, limit=limit), now)
    runs = tuple(NewRun(new_id(), w.id, event) for w in registry.triggered_by(name))
    return EventIntake(event, runs)
