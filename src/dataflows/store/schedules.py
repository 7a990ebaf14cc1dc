"""Schedules: the cron triggers of the code, their next tick, paused or not.

Workers write them from their code as they start (:func:`sync_schedules`) and fire the ticks
that are due: the run of a tick starts from an event whose id names the schedule and the tick
(so the store's event deduplication makes a tick fired twice one run), then next_at moves on
by compare-and-set (:func:`advance_schedule`). When the ticks are is not the store's business:
the engine computes them (:mod:`dataflows.schedules`) and hands the store instants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dataflows.records import NewSchedule, ScheduleRow
from dataflows.store.program import Program, Query
from dataflows.store.rows import Row


def schedule_row(row: Row) -> ScheduleRow:
    return ScheduleRow(
        id=row["id"],
        workflow_id=row["workflow_id"],
        expr=row["expr"],
        tz=row["tz"],
        catch_up=row["catch_up"],
        next_at=row["next_at"],
        paused=bool(row["paused"]),
        updated_at=row["updated_at"],
    )


def sync_schedules(schedules: Sequence[NewSchedule], now: float) -> Program:
    """Make the stored schedules those of the code: add and change them, delete the rest."""
    yield Query("lock_schedules", {}, "one")
    for s in sorted(schedules, key=lambda s: s.id):
        yield Query(
            "upsert_schedule",
            {
                "id": s.id,
                "workflow_id": s.workflow_id,
                "expr": s.expr,
                "tz": s.tz,
                "catch_up": s.catch_up,
                "next_at": s.next_at,
                "now": now,
            },
        )
    yield Query("delete_schedules_except", {"ids": json.dumps([s.id for s in schedules])})


def list_schedules() -> Program:
    rows = yield Query("list_schedules", {}, "all")
    return [schedule_row(row) for row in rows]


def get_schedule(schedule_id: str) -> Program:
    row = yield Query("get_schedule", {"id": schedule_id}, "one")
    return None if row is None else schedule_row(row)


def due_schedules(now: float) -> Program:
    """The schedules not paused whose next tick is at or before ``now``."""
    rows = yield Query("due_schedules", {"now": now}, "all")
    return [schedule_row(row) for row in rows]


def next_schedule_at() -> Program:
    row = yield Query("next_schedule_at", {}, "one")
    return None if row is None else row["next_at"]


def advance_schedule(schedule_id: str, expected: float, next_at: float, now: float) -> Program:
    """Move next_at from ``expected`` to ``next_at``; ``False`` if another worker did first (or
    the schedule was paused or removed meanwhile)."""
    changed = yield Query(
        "advance_schedule",
        {"id": schedule_id, "expected": expected, "next_at": next_at, "now": now},
        "rowcount",
    )
    return bool(changed)


def pause_schedule(schedule_id: str, now: float) -> Program:
    """Pause; the schedule afterwards, or ``None`` if there is none with that id."""
    yield Query("pause_schedule", {"id": schedule_id, "now": now}, "rowcount")
    return (yield from get_schedule(schedule_id))


def resume_schedule(schedule_id: str, next_at: float, now: float) -> Program:
    """Resume from ``next_at`` (a schedule not paused keeps its own); the schedule afterwards,
    or ``None``."""
    yield Query("resume_schedule", {"id": schedule_id, "next_at": next_at, "now": now}, "rowcount")
    return (yield from get_schedule(schedule_id))
