"""Records read from the rows the queries answer, by column name.

Both backends answer rows that are read by name (``dict_row`` on PostgreSQL, ``sqlite3.Row`` on
SQLite) and both dialects' queries name their columns alike (a test runs the same operations on
both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dataflows.records import AttemptRow, ClaimedRun, RunRow, StepRow, StoredEvent
from dataflows.store.program import json_column

#: A row read by column name.
Row = Mapping[str, Any]


def step_row(row: Row, event_id: str = "event_id") -> StepRow:
    """A history entry (``load_history``; in a claim's rows its event is ``step_event_id``)."""
    return StepRow(
        key=row["step_key"],
        kind=row["kind"],
        status=row["status"],
        output=json_column(row["output"]),
        error=json_column(row["error"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        wake_at=row["wake_at"],
        event_id=row[event_id],
    )


def stored_event(row: Row) -> StoredEvent:
    """The event that started a run (its ``event_*`` columns)."""
    return StoredEvent(
        row["event_id"], row["event_name"], json_column(row["event_data"]), row["event_ts"]
    )


def claimed_runs(rows: Iterable[Row]) -> list[ClaimedRun]:
    """The runs a claim returned: one row per history entry (NULLs if none), grouped by run."""
    runs: dict[str, tuple[Row, list[StepRow]]] = {}
    for row in rows:
        _, history = runs.setdefault(row["id"], (row, []))
        if row["step_key"] is not None:
            history.append(step_row(row, "step_event_id"))
    return [
        ClaimedRun(
            id=row["id"],
            workflow_id=row["workflow_id"],
            event=stored_event(row),
            created_at=row["created_at"],
            lease_token=row["lease_token"],
            recoveries=row["recoveries"],
            parent_run_id=row["parent_run_id"],
            history=tuple(history),
        )
        for row, history in runs.values()
    ]


def run_row(
    row: Row, steps: tuple[StepRow, ...] = (), attempts: tuple[AttemptRow, ...] = ()
) -> RunRow:
    return RunRow(
        id=row["id"],
        workflow_id=row["workflow_id"],
        status=row["status"],
        event=stored_event(row),
        result=json_column(row["result"]),
        error=json_column(row["error"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        wake_at=row["wake_at"],
        wait_reason=row["wait_reason"],
        recoveries=row["recoveries"],
        parent_run_id=row["parent_run_id"],
        idempotency_key=row["idempotency_key"],
        steps=steps,
        attempts=attempts,
        version=row["version"],
    )


def attempt_row(row: Row) -> AttemptRow:
    return AttemptRow(
        key=row["step_key"],
        attempt=row["attempt"],
        error=json_column(row["error"]),
        started_at=row["started_at"],
        failed_at=row["failed_at"],
        retry_at=row["retry_at"],
    )
