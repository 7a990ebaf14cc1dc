"""Records read from the rows the queries answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataflows.records import AttemptRow, ClaimedRun, RunRow, StepRow, StoredEvent
from dataflows.store.program import json_column


def step_row(r: Sequence[Any]) -> StepRow:
    return StepRow(
        key=r[0],
        kind=r[1],
        status=r[2],
        output=json_column(r[3]),
        error=json_column(r[4]),
        attempts=r[5],
        started_at=r[6],
        completed_at=r[7],
        wake_at=r[8],
        event_id=r[9],
    )


#: The columns of a claim's rows, in order (PostgreSQL's claim_runs function names them so).
CLAIM_COLUMNS = (
    "id", "workflow_id", "event_id", "event_name", "event_data", "event_ts", "created_at",
    "lease_token", "recoveries", "parent_run_id", "step_key", "kind", "status", "output", "error",
    "attempts", "started_at", "completed_at", "wake_at", "step_event_id",
)  # fmt: skip


def claimed_runs(rows: Sequence[Sequence[Any]]) -> list[ClaimedRun]:
    """The runs a claim returned: one row per history entry (NULLs if none), grouped by run."""
    runs: dict[str, tuple[Sequence[Any], list[StepRow]]] = {}
    for r in rows:
        _, history = runs.setdefault(r[0], (r, []))
        if r[10] is not None:
            history.append(step_row(r[10:]))
    return [
        ClaimedRun(
            id=r[0],
            workflow_id=r[1],
            event=StoredEvent(r[2], r[3], json_column(r[4]), r[5]),
            created_at=r[6],
            lease_token=r[7],
            recoveries=r[8],
            parent_run_id=r[9],
            history=tuple(history),
        )
        for r, history in runs.values()
    ]


def run_row(
    r: Sequence[Any], steps: tuple[StepRow, ...] = (), attempts: tuple[AttemptRow, ...] = ()
) -> RunRow:
    return RunRow(
        id=r[0],
        workflow_id=r[1],
        status=r[2],
        event=StoredEvent(r[3], r[4], json_column(r[5]), r[6]),
        result=json_column(r[7]),
        error=json_column(r[8]),
        created_at=r[9],
        updated_at=r[10],
        completed_at=r[11],
        wake_at=r[12],
        wait_reason=r[13],
        recoveries=r[14],
        parent_run_id=r[15],
        idempotency_key=r[16],
        steps=steps,
        attempts=attempts,
    )


def attempt_row(r: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        key=r[0],
        attempt=r[1],
        error=json_column(r[2]),
        started_at=r[3],
        failed_at=r[4],
        retry_at=r[5],
    )
