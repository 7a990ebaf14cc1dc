"""Runs: started, finished, cancelled, retried, read, listed and purged.

A run is created ``queued`` by the event that starts it (:mod:`dataflows.store.events`) or by
:func:`start_run`; a worker leases it (:mod:`dataflows.store.leases`) and finishes it here,
fenced by its lease. A child run that finishes (or is cancelled) sends its parent the
``dataflows/run.finished`` event in the same transaction.
"""

from __future__ import annotations

import json

from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.records import Lease, NewRun, RunOutcome
from dataflows.store.events import (
    Intake,
    Sending,
    expire_idempotency_key,
    insert_run,
    run_finished,
    send,
)
from dataflows.store.program import NOTIFY, Program, Query
from dataflows.store.rows import attempt_row, run_row
from dataflows.store.steps import load_history


def start_run(run: NewRun, now: float) -> Program:
    """``(run_id, created)``: an idempotency key already used answers the existing run."""
    if run.idempotency_window is not None:
        yield expire_idempotency_key(run, now)
    created = yield insert_run(run, now)
    if created:
        yield NOTIFY
        return (run.id, True)
    row = yield Query(
        "run_by_idempotency_key",
        {"workflow_id": run.workflow_id, "idempotency_key": run.idempotency_key},
        "one",
    )
    if row is not None:
        return (row["id"], False)
    # Not an idempotency hit: the run id exists, from a retry whose first answer was lost.
    if (yield Query("run_status", {"run_id": run.id}, "one")) is not None:
        return (run.id, False)
    raise RuntimeError(f"run {run.id!r} could not be created")


def finish_run(lease: Lease, outcome: RunOutcome, now: float, intake: Intake) -> Program:
    """``completed`` or ``failed`` (fenced), its waits dropped; ``False`` when fenced. A child
    run's parent gets its ``run.finished`` event through ``intake``."""
    rows = yield Query(
        "finish_run",
        {
            "run_id": lease.run_id,
            "lease_token": lease.token,
            "status": outcome.status,
            "result": outcome.result_json,
            "error": outcome.error_json,
            "now": now,
        },
        "all",
    )
    if not rows:
        return False
    workflow_id, parent_run_id = rows[0]["workflow_id"], rows[0]["parent_run_id"]
    if parent_run_id is not None:
        finished = run_finished(lease.run_id, workflow_id, outcome, now)
        yield from send(intake, [Sending(finished, now)])
    return True


def get_run(run_id: str) -> Program:
    """The run with its history and every failed attempt of its retried steps."""
    row = yield Query("get_run", {"run_id": run_id}, "one")
    if row is None:
        return None
    steps = yield from load_history(run_id)
    attempts = yield Query("load_attempts", {"run_id": run_id}, "all")
    return run_row(row, tuple(steps), tuple(attempt_row(a) for a in attempts))


def run_status(run_id: str) -> Program:
    row = yield Query("run_status", {"run_id": run_id}, "one")
    return None if row is None else row["status"]


def list_runs(
    workflow_id: str | None, status: str | None, limit: int, before: tuple[float, str] | None
) -> Program:
    rows = yield Query(
        "list_runs",
        {
            "workflow_id": workflow_id,
            "status": status,
            "limit": limit,
            "before_ts": before[0] if before else None,
            "before_id": before[1] if before else None,
        },
        "all",
    )
    return [run_row(row) for row in rows]


CANCELLED = json.dumps({"type": "Cancelled", "message": "the run was cancelled"})


def cancel_run(run_id: str, now: float, intake: Intake, error: str = CANCELLED) -> Program:
    rows = yield Query("cancel_run", {"run_id": run_id, "now": now, "error": error}, "all")
    if not rows:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        return str(row["status"])
    yield Query("delete_run_waits", {"run_id": run_id})
    workflow_id, parent_run_id = rows[0]["workflow_id"], rows[0]["parent_run_id"]
    if parent_run_id is not None:
        cancelled = RunOutcome("cancelled", None, error)
        yield from send(intake, [Sending(run_finished(run_id, workflow_id, cancelled, now), now)])
    yield NOTIFY  # a worker holding it learns at its next heartbeat; this wakes waiters of it
    return "cancelled"


def cancel_unstarted(now: float, intake: Intake, batch: int) -> Program:
    """Cancel up to ``batch`` queued runs never claimed by their ``start_by``; their ids."""
    rows = yield Query("unstarted_runs", {"now": now, "batch": batch}, "all")
    for row in rows:
        error = json.dumps(
            {"type": "StartTimeout", "message": "the run did not start within its start_timeout"}
        )
        yield from cancel_run(row["id"], now, intake, error)
    return [row["id"] for row in rows]


def retry_run(run_id: str, now: float) -> Program:
    changed = yield Query("requeue_run", {"run_id": run_id, "now": now}, "rowcount")
    if not changed:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        raise InvalidRunState(run_id, row["status"], "retry")
    yield Query("forget_failed_steps", {"run_id": run_id})
    yield Query("forget_attempts", {"run_id": run_id})
    yield NOTIFY
    return "queued"


def run_counts() -> Program:
    rows = yield Query("run_counts", {}, "all")
    return [(row["workflow_id"], row["status"], int(row["count"])) for row in rows]


def purge_finished(before: float, batch: int) -> Program:
    rows = yield Query("finished_runs_before", {"before": before, "batch": batch}, "all")
    for row in rows:
        for name in ("purge_steps", "purge_attempts", "purge_waits", "purge_run"):
            yield Query(name, {"run_id": row["id"]})
    events = yield Query("purge_events", {"before": before, "batch": batch}, "rowcount")
    return len(rows) + events
