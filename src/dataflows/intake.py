"""Turning an event into what the store keeps: the event row and the runs it triggers."""

from __future__ import annotations

import os
from typing import Any

from dataflows.names import check_event_id, check_sent_event_name
from dataflows.records import BodyKey, EventIntake, NewEvent
from dataflows.serialization import check_event_data
from dataflows.workflow import Registry

#: The name of the event that starts a run directly (``app.start``, ``step.invoke``).
START_EVENT = "dataflows/start"
#: The name of the event that starts a run at a tick of its workflow's cron trigger.
CRON_EVENT = "dataflows/cron"


def new_id() -> str:
    """A new event or run id: 32 hex digits, 128 random bits from the operating system's
    CSPRNG (the size of a trace id; ``uuid4().hex`` has 122, and costs four times as much)."""
    return os.urandom(16).hex()


def start_event(run_id: str, data: Any, *, now: float, limit: int) -> NewEvent:
    """The event a run started directly begins with: its data checked like any event's."""
    return NewEvent(f"{run_id}:start", START_EVENT, check_event_data(data, limit=limit), now)


def event_intake(
    registry: Registry,
    name: str,
    data: Any,
    *,
    event_id: str | None,
    now: float,
    limit: int,
    body: BodyKey | None = None,
) -> EventIntake:
    """Validate an event and pair it with a new run for every workflow it triggers."""
    check_sent_event_name(name)
    if event_id is not None:
        check_event_id(event_id)
    event = NewEvent(event_id or new_id(), name, check_event_data(data, limit=limit), now)
    runs = tuple(w.new_run(new_id(), event) for w in registry.triggered_by(name))
    return EventIntake(event, runs, body)


def internal_intake(name: str, data: Any, *, event_id: str, now: float, limit: int) -> EventIntake:
    """An event of the engine's own (a name under ``dataflows/``): it starts no run, it only
    resolves the waits it matches."""
    check_event_id(event_id)
    event = NewEvent(event_id, name, check_event_data(data, limit=limit), now)
    return EventIntake(event, (), None)
