"""Runs: started, finished, cancelled, retried, read, listed and purged.

A run is created ``queued`` by the event that starts it (:mod:`dataflows.store.events`) or by
:func:`start_run`; a worker leases it (:mod:`dataflows.store.leases`) and finishes it here,
fenced by its lease. A child run that finishes (or is cancelled) sends its parent the
``dataflows/run.finished`` event in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.records import (
    RETRY_MARK,
    EventWait,
    Lease,
    NewRun,
    RunOutcome,
    StepRow,
    StoredEvent,
    UnfinishedRun,
    WebhookRejection,
)
from dataflows.store.events import (
    Intake,
    Sending,
    expire_idempotency_key,
    insert_run,
    run_finished,
    send,
)
from dataflows.store.program import NOTIFY, Program, Query, json_column
from dataflows.store.rows import attempt_row, run_row, step_row, stored_event
from dataflows.store.steps import load_history


def start_run(run: NewRun, now: float) -> Program:
    """``(run_id, created)``: an idempotency key already used answers the existing run."""
    if run.idempotency_window is not None:
        yield expire_idempotency_key(run, now)
    created = yield insert_run(run, now)
    if created:
        yield NOTIFY
        return (run.id, True)
    return (yield from _existing_run(run))


def start_runs(items: Sequence[tuple[NewRun, float]]) -> Program:
    """Several :func:`start_run` calls in one transaction (group commit of ``app.start``): one
    multi-row insert, in :func:`write_order`. Per item, ``(run_id, created)`` or the exception
    that item alone raised."""
    ordered = [items[n] for n in write_order(items)]
    for run, now in ordered:
        if run.idempotency_window is not None:
            yield expire_idempotency_key(run, now)
    rows = yield Query("insert_runs", {"runs": run_rows(ordered)}, "all")
    created = {row["id"] for row in rows}
    results: list[tuple[str, bool] | Exception] = []
    for run, _ in items:
        if run.id in created:
            results.append((run.id, True))
            continue
        try:
            results.append((yield from _existing_run(run)))
        except RuntimeError as exc:
            results.append(exc)
    if created:
        yield NOTIFY
    return results


def write_order(items: Sequence[tuple[NewRun, float]]) -> list[int]:
    """The positions of a batch's starts in the order their rows are written: by (workflow,
    idempotency key), callers' order within a key, so a key repeated in the batch goes to its
    first caller, and two processes' batches wait on each other's keys in one order and cannot
    deadlock."""
    return sorted(
        range(len(items)),
        key=lambda n: (items[n][0].workflow_id, items[n][0].idempotency_key or ""),
    )


def run_rows(items: Sequence[tuple[NewRun, float]]) -> str:
    """The rows of a batch of starts: one JSON array of the columns a run is created with per
    run, by position (cheaper to build and to parse than an object per run)."""
    return _ROWS_ENCODER.encode(
        [
            (
                run.id,
                run.workflow_id,
                run.event.id,
                run.event.name,
                run.event.data_json,
                run.event.ts,
                run.idempotency_key,
                run.parent_run_id,
                run.parent_step_key,
                run.concurrency_key,
                run.priority,
                run.start_timeout,
                run.rate_key,
                now,
            )
            for run, now in items
        ]
    )


_ROWS_ENCODER = json.JSONEncoder(separators=(",", ":"))


def expired_keys(items: Sequence[tuple[NewRun, float]]) -> str | None:
    """The idempotency keys a batch gives up before its insert (each past its run's window), in
    write order, as JSON ``[workflow, key, created at or before]``; ``None`` if none."""
    expire = [
        (run.workflow_id, run.idempotency_key, now - run.idempotency_window)
        for run, now in items
        if run.idempotency_window is not None
    ]
    return _ROWS_ENCODER.encode(expire) if expire else None


def started(
    items: Sequence[tuple[NewRun, float]], order: Sequence[int], missed: Sequence[Any]
) -> list[tuple[str, bool] | Exception]:
    """Per item (callers' order), ``(run_id, created)`` or the exception it alone raised, from
    the runs a batch written in ``order`` did not create: rows of their position in that order
    (1-based, ``n``) and the run holding their key or id (``id``, ``None`` if there is none)."""
    results: list[tuple[str, bool] | Exception] = [(run.id, True) for run, _ in items]
    for row in missed:
        n = order[int(row["n"]) - 1]
        run = items[n][0]
        found = row["id"]
        results[n] = (
            RuntimeError(f"run {run.id!r} could not be created")
            if found is None
            else (found, False)
        )
    return results


def _existing_run(run: NewRun) -> Program:
    """The answer for a run the insert did not create: the run holding its idempotency key."""
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


def set_run_version(lease: Lease, version: str) -> Program:
    """Record the version of the code the run started with (its first attempt's; kept after)."""
    count = yield Query(
        "set_run_version",
        {"run_id": lease.run_id, "lease_token": lease.token, "version": version},
        "rowcount",
    )
    return bool(count)


def unfinished_runs(after: str, limit: int, workflow_id: str | None) -> Program:
    """A page of unfinished runs by id after ``after``, each with its history (two reads)."""
    rows = yield Query(
        "unfinished_runs", {"after": after, "limit": limit, "workflow_id": workflow_id}, "all"
    )
    if not rows:
        return []
    histories = yield from page_histories([row["id"] for row in rows])
    return [
        UnfinishedRun(
            id=row["id"],
            workflow_id=row["workflow_id"],
            status=row["status"],
            event=stored_event(row),
            created_at=row["created_at"],
            version=row["version"],
            history=tuple(histories.get(row["id"], ())),
        )
        for row in rows
    ]


def get_event(event_id: str) -> Program:
    """A stored event by id, or ``None``."""
    row = yield Query("get_event", {"event_id": event_id}, "one")
    if row is None:
        return None
    return StoredEvent(row["id"], row["name"], json_column(row["data"]), row["ts"])


def recent_events(limit: int, before_seq: int | None) -> Program:
    """``(seq, event)`` newest first, from before ``before_seq`` (keyset on the primary key)."""
    rows = yield Query("recent_events", {"limit": limit, "before_seq": before_seq}, "all")
    return [
        (row["seq"], StoredEvent(row["id"], row["name"], json_column(row["data"]), row["ts"]))
        for row in rows
    ]


def record_webhook_rejection(rejection: WebhookRejection, keep: int) -> Program:
    """Store a refused delivery and drop those older than the newest ``keep``."""
    row = yield Query(
        "insert_webhook_rejection",
        {
            "source": rejection.source,
            "status": rejection.status,
            "reason": rejection.reason,
            "body": rejection.body,
            "body_bytes": rejection.body_bytes,
            "now": rejection.received_at,
        },
        "one",
    )
    yield Query("prune_webhook_rejections", {"below": row["seq"] - keep})


def recent_webhook_rejections(limit: int, before_seq: int | None) -> Program:
    rows = yield Query(
        "recent_webhook_rejections", {"limit": limit, "before_seq": before_seq}, "all"
    )
    return [
        WebhookRejection(
            row["seq"],
            row["source"],
            row["status"],
            row["reason"],
            row["body"],
            row["body_bytes"],
            row["received_at"],
        )
        for row in rows
    ]


def run_waits(run_id: str) -> Program:
    rows = yield Query("run_waits", {"run_id": run_id}, "all")
    return [
        (
            row["step_key"],
            row["kind"],
            row["event_name"],
            row["filter_paths"],
            row["filter_key"],
            row["wake_at"],
        )
        for row in rows
    ]


def runs_of_event(event_id: str, limit: int) -> Program:
    """``(run_id, workflow_id, status, how)`` of up to ``limit`` runs the event started (``how``
    is ``"started"``) and up to ``limit`` it resumed (``"resumed"``)."""
    rows = yield Query("event_runs", {"event_id": event_id, "limit": limit}, "all")
    return [(row["id"], row["workflow_id"], row["status"], row["how"]) for row in rows]


def event_waits(event_name: str, limit: int) -> Program:
    """Pending waits for events named ``event_name``, oldest first, with their runs' history."""
    rows = yield Query("event_waits", {"event_name": event_name, "limit": limit}, "all")
    histories: dict[str, list[StepRow]] = {}
    if rows:
        histories = yield from page_histories([row["run_id"] for row in rows])
    return [
        EventWait(
            row["run_id"],
            row["workflow_id"],
            row["step_key"],
            row["filter_key"] or "",
            row["wake_at"],
            row["created_at"],
            tuple(histories.get(row["run_id"], ())),
        )
        for row in rows
    ]


def page_histories(run_ids: list[str]) -> Program:
    """The histories of several runs in one read, by run id (as :func:`load_history` each)."""
    steps = yield Query("page_histories", {"run_ids": json.dumps(run_ids)}, "all")
    histories: dict[str, list[StepRow]] = {}
    for step in steps:
        histories.setdefault(step["run_id"], []).append(step_row(step))
    return histories


CANCELLED = json.dumps({"type": "Cancelled", "message": "the run was cancelled"})
PARENT_CANCELLED = json.dumps({"type": "Cancelled", "message": "the parent run was cancelled"})
UNFINISHED = ("queued", "running", "waiting")


def cancel_run(run_id: str, now: float, intake: Intake, error: str = CANCELLED) -> Program:
    """Cancel the run and its unfinished children (recursively): ``cancelled``, or the status
    it had already finished with. ``error`` is the run's (the default: cancelled by a call)."""
    rows = yield Query("cancel_run", {"run_id": run_id, "now": now, "error": error}, "all")
    if not rows:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        return str(row["status"])
    roots = [{"id": run_id, **rows[0]}]
    yield from _cancel_trees(roots, now, intake)
    return "cancelled"


def cancel_matching(
    workflow_id: str | None,
    statuses: Sequence[str],
    created_after: float | None,
    created_before: float | None,
    batch: int,
    now: float,
    intake: Intake,
) -> Program:
    """One batch of a bulk cancel: up to ``batch`` unfinished runs matching the filters, with
    their unfinished children. The ids of the matching runs cancelled (children not counted)."""
    rows = yield Query(
        "cancel_matching",
        {
            "workflow_id": workflow_id,
            "statuses": json.dumps([s for s in statuses if s in UNFINISHED]),
            "created_after": created_after,
            "created_before": created_before,
            "batch": batch,
            "now": now,
            "error": CANCELLED,
        },
        "all",
    )
    if rows:
        yield from _cancel_trees([dict(row) for row in rows], now, intake)
    return [str(row["id"]) for row in rows]


def _cancel_trees(roots: list[dict[str, Any]], now: float, intake: Intake) -> Program:
    """After ``roots`` were set ``cancelled``: their waits go, their unfinished children are
    cancelled level by level, and every cancelled run that has a parent sends it
    ``run.finished`` (a parent waiting in ``step.invoke`` ends its step; one cancelled with it
    resolves nothing, but a retry of it finds the event)."""
    cancelled = list(roots)
    level = [str(row["id"]) for row in roots]
    while level:
        yield Query("delete_waits_of_runs", {"run_ids": json.dumps(level)})
        children = yield Query(
            "cancel_children",
            {"run_ids": json.dumps(level), "now": now, "error": PARENT_CANCELLED},
            "all",
        )
        cancelled.extend(dict(row) for row in children)
        level = [str(row["id"]) for row in children]
    finished = []
    for row in cancelled:
        if row["parent_run_id"] is not None:
            error = CANCELLED if row in roots else PARENT_CANCELLED
            outcome = RunOutcome("cancelled", None, error)
            event = run_finished(str(row["id"]), str(row["workflow_id"]), outcome, now)
            finished.append(Sending(event, now))
    if finished:
        yield from send(intake, finished)
    yield NOTIFY  # wakes workers: one holding a cancelled run in a sleep drops it


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
    """Queue a failed or cancelled run again: failed steps and attempts are forgotten, the
    recorded ones stay."""
    changed = yield Query("requeue_run", {"run_id": run_id, "now": now}, "rowcount")
    if not changed:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        raise InvalidRunState(run_id, row["status"], "retry")
    yield Query("forget_failed_steps", {"run_id": run_id})
    yield Query("forget_attempts", {"run_id": run_id})
    # An operator's retry goes on: the cancel_on watches (one resolved by the event that
    # cancelled the run, if so) are forgotten, and registered again at the next claim looking
    # only at events received from now on (the mark's time).
    yield Query("forget_cancel_watches", {"run_id": run_id})
    yield Query("mark_retried", {"run_id": run_id, "key": RETRY_MARK, "now": now})
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
