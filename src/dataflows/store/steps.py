"""Step checkpoints: a step's outcome is recorded once, fenced by the run's lease.

A new step result is one fenced ``INSERT`` (``record_step``); the results of several runs that
finish meanwhile share one multi-row insert (:func:`record_steps_query`, group commit), each
fenced by its own lease. A key already recorded is never overwritten. A failed attempt that will
be retried is recorded the same way (``record_attempt``), and the history a replay goes by is
read back in one query (``load_history``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dataflows.records import FailedAttempt, Lease, NewStep
from dataflows.store.events import Intake, Sending
from dataflows.store.leases import holds_lease
from dataflows.store.program import Program, Query
from dataflows.store.rows import Row, step_row


def record_step(lease: Lease, step: NewStep, now: float) -> Program:
    """Record ``step``; ``False`` when fenced."""
    inserted = yield record_step_query(lease, step, now)
    if not inserted:  # fenced, or recorded already: by this holder, whose answer was lost
        return (yield from holds_lease(lease))
    return True


def record_step_sending(lease: Lease, step: NewStep, now: float, intake: Intake) -> Program:
    """Record ``step`` with the events it sends (``step.sends``), taken in by ``intake``;
    ``False`` when fenced."""
    # Intake's locks come before the step's insert locks the run's row, as in every intake.
    keys = yield from intake.keys([sent.event for sent in step.sends])
    inserted = yield record_step_query(lease, step, now)
    if not inserted:  # as in record_step; the events went in with the step, if it was recorded
        return (yield from holds_lease(lease))
    yield from intake.store([Sending(sent, now) for sent in step.sends], keys)
    return True


def record_steps_sending(items: Sequence[tuple[Lease, NewStep, float]], intake: Intake) -> Program:
    """Several steps that send events (``step.send_event`` of concurrent runs), each as
    :func:`record_step_sending` would record it, in one transaction (group commit): intake's
    locks for all their events, one fenced multi-row insert of the steps, then the events of
    the steps recorded; per item, ``False`` when fenced (its events are not stored)."""
    if len(items) == 1:
        return [(yield from record_step_sending(*items[0], intake))]
    events = [sent.event for _, step, _ in items for sent in step.sends]
    keys = yield from intake.keys(events)
    queries = [record_step_query(lease, step, now) for lease, step, now in items]
    # In run id order, as every writer of several runs rows locks them.
    rows = yield record_steps_query(sorted(queries, key=lambda q: str(q.params["run_id"])))
    counts = record_steps_counts(queries, rows)
    sending: list[Sending] = []
    sending_keys: list[Any] = []
    first = 0
    for (_, step, now), count in zip(items, counts, strict=True):
        last = first + len(step.sends)
        if count:
            sending += [Sending(sent, now) for sent in step.sends]
            sending_keys += keys[first:last]
        first = last
    if sending:
        yield from intake.store(sending, sending_keys)
    recorded = []
    for (lease, _, _), count in zip(items, counts, strict=True):
        # Nothing inserted: fenced, or recorded already by this holder (an answer lost).
        recorded.append(bool(count) or (yield from holds_lease(lease)))
    return recorded


def record_step_query(lease: Lease, step: NewStep, now: float) -> Query:
    """One fenced insert of ``step``; for a wait's step (a sleep waited out in the worker) the
    wait goes in the same statement."""
    return Query(
        "record_step" if step.kind == "run" else "record_wait_step",
        {
            "run_id": lease.run_id,
            "lease_token": lease.token,
            "key": step.key,
            "kind": step.kind,
            "status": step.status,
            "output": step.output_json,
            "error": step.error_json,
            "attempts": step.attempts,
            "event_id": step.event_id,
            "started_at": step.started_at,
            "now": now,
        },
        "rowcount",
    )


def record_steps_query(queries: Sequence[Query]) -> Query:
    """Several ``record_step`` queries as one fenced multi-row insert (group commit)."""
    return Query("record_steps", {"steps": json.dumps([q.params for q in queries])}, "all")


def record_steps_counts(queries: Sequence[Query], inserted: Sequence[Row]) -> list[int]:
    """Per query, 1 if the multi-row insert recorded its step (it returns run ids and keys)."""
    done = {(row["run_id"], row["step_key"]) for row in inserted}
    return [int((q.params["run_id"], q.params["key"]) in done) for q in queries]


def record_attempt(lease: Lease, attempt: FailedAttempt, now: float) -> Program:
    """Record a failed attempt of a step retried at ``attempt.retry_at``; ``False`` when fenced."""
    inserted = yield Query(
        "record_attempt",
        {
            "run_id": lease.run_id,
            "lease_token": lease.token,
            "key": attempt.key,
            "attempt": attempt.attempt,
            "error": attempt.error_json,
            "started_at": attempt.started_at,
            "retry_at": attempt.retry_at,
            "now": now,
        },
        "rowcount",
    )
    if not inserted:  # fenced, or recorded already: by this holder, whose answer was lost
        return (yield from holds_lease(lease))
    return True


def load_history(run_id: str) -> Program:
    """The run's steps, recorded and in progress, in recording order."""
    rows = yield Query("load_history", {"run_id": run_id}, "all")
    return [step_row(r) for r in rows]
