"""Event intake: an event is stored once, starts the runs it triggers and resolves the waits it
matches, in one transaction.

Intake and the waits an event can resolve serialise by the waits' keys
(:mod:`dataflows.store.keys`), so a wait and an event that could match never miss each other.
A webhook body signed without its delivery id (:class:`~dataflows.records.BodyKey`) is
remembered with the event in the same transaction: the same body again within its window is a
duplicate of that event, under whatever id it came.
Each dialect takes events in one way, its :class:`Intake`, in two parts so that a program can
write in between (a step that sends events is recorded after the locks and before the events):
:meth:`Intake.keys`, before any row is touched, and :meth:`Intake.store`. SQLite runs
statements one by one (:class:`SqliteIntake`); PostgreSQL calls its functions
(:class:`PostgresIntake`), and its ``intake_events`` function does both parts and the eager
claim in one round trip when nothing else shares the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dataflows.records import (
    RUN_FINISHED_EVENT,
    ClaimedRun,
    ClaimRequest,
    EventIntake,
    IntakeResult,
    NewEvent,
    NewRun,
    RunOutcome,
    SentEvents,
)
from dataflows.store.keys import WaitKeys, wait_keys, wait_output
from dataflows.store.program import NOTIFY, Program, Query, json_column


@dataclass(frozen=True, slots=True)
class Sending:
    """An event on its way in, with its caller's time and, maybe, the runs to claim for it."""

    intake: EventIntake
    now: float
    claim: ClaimRequest | None = None


class Intake(Protocol):
    """How a dialect takes in events inside a program's transaction."""

    def keys(self, events: Sequence[NewEvent]) -> Program:
        """Per event, the wait keys it matches: read before any row is touched and, where
        intake and waits run concurrently, under the locks that serialise them."""
        ...

    def store(self, items: Sequence[Sending], keys: Sequence[WaitKeys]) -> Program:
        """Store the events, start their runs and resolve the waits they match (``keys``, as
        :meth:`keys` answered): per item, its :class:`IntakeResult`."""
        ...


def send(intake: Intake, items: Sequence[Sending]) -> Program:
    """Take in the events of ``items`` in one transaction: per item, its result."""
    keys = yield from intake.keys([item.intake.event for item in items])
    return (yield from intake.store(items, keys))


class SqliteIntake:
    """Statement by statement. ``BEGIN IMMEDIATE`` serialises SQLite's writers, so a wait and an
    intake never overlap: nothing to lock, the keys computed here from the shapes read."""

    def keys(self, events: Sequence[NewEvent]) -> Program:
        if not events:
            return []
        names = sorted({event.name for event in events})
        rows = yield Query("wait_shapes", {"names": json.dumps(names)}, "all")
        shapes: dict[str, list[str]] = {}
        for row in rows:
            shapes.setdefault(row["event_name"], []).append(row["filter_paths"])
        return wait_keys(events, shapes)

    def store(self, items: Sequence[Sending], keys: Sequence[WaitKeys]) -> Program:
        results = []
        for item, wakes in zip(items, keys, strict=True):
            results.append((yield from _store_one(item.intake, item.now, wakes)))
        return results


def _store_one(intake: EventIntake, now: float, keys: WaitKeys) -> Program:
    event = intake.event
    if intake.body is not None:
        first = yield from _seen_body(intake, now)
        if first is not None and first != event.id:
            rows = yield Query("runs_of_event", {"event_id": first}, "all")
            return IntakeResult(first, tuple(row["id"] for row in rows), duplicate=True)
    inserted = yield Query(
        "insert_event",
        {"id": event.id, "name": event.name, "data": event.data_json, "ts": event.ts, "now": now},
        "rowcount",
    )
    if not inserted:
        rows = yield Query("runs_of_event", {"event_id": event.id}, "all")
        return IntakeResult(event.id, tuple(row["id"] for row in rows), duplicate=True)
    created, dropped = [], []
    debounced: dict[str, str] = {}
    for run in intake.runs:
        if run.rate_limit is not None:
            full = yield Query(
                "rate_limited",
                {
                    "workflow_id": run.workflow_id,
                    "rate_key": run.rate_key,
                    "rate_limit": run.rate_limit,
                    "rate_period": run.rate_period,
                    "now": now,
                },
                "one",
            )
            if full["full"]:
                dropped.append(run.id)
                continue
        if run.idempotency_window is not None:
            yield expire_idempotency_key(run, now)
        if run.debounce_period is not None:
            pending = yield debounce(run, now)
            if pending is not None:
                debounced[run.id] = pending["id"]
                continue
            if (yield insert_run(run, now, "insert_debounced_run")):
                created.append(run.id)
            continue
        if (yield insert_run(run, now)):
            created.append(run.id)
    resumed: tuple[str, ...] = ()
    cancelled: Sequence[Any] = ()
    if keys:
        rows = yield Query(
            "resolve_waits",
            {
                "event_name": event.name,
                "keys": json.dumps(keys),
                "event_id": event.id,
                "output": wait_output(event.id, event.name, event.data_json, event.ts),
                "now": now,
            },
            "all",
        )
        resumed = tuple(sorted({row["run_id"] for row in rows}))
        cancelled = yield Query("cancelled_by_intake", {}, "all")
        # Runs cancelled by cancel_on (children too) that a parent invoked: each tells its
        # parent, as when a run is cancelled by a call.
        finished = [
            Sending(
                run_finished(
                    row["id"], row["workflow_id"], RunOutcome("cancelled", None, row["error"]), now
                ),
                now,
            )
            for row in cancelled
            if row["parent_run_id"] is not None
        ]
        if finished:
            yield from send(SqliteIntake(), finished)
    if intake.runs or resumed or cancelled:  # a cancel wakes workers, as app.cancel's does
        yield NOTIFY
    return IntakeResult(
        event.id, tuple(created), False, resumed, skipped(intake, created, dropped, debounced)
    )


def _seen_body(intake: EventIntake, now: float) -> Program:
    """The id of the event a body within its window belongs to; else, the body is remembered
    as this event's (its row taken over if it expired) and up to two expired rows are deleted."""
    body = intake.body
    assert body is not None
    key = {"source": body.source, "digest": body.digest}
    row = yield Query("body_event", {**key, "now": now}, "one")
    if row is not None:
        return str(row["event_id"])
    yield Query(
        "remember_body",
        {**key, "event_id": intake.event.id, "now": now, "expires_at": now + body.window},
    )
    yield Query("forget_expired_bodies", {"now": now, "limit": 2})
    return None


class PostgresIntake:
    """The ``lock_intake`` function (it reads the filter shapes and computes the keys in SQL,
    under its locks), then ``store_events``."""

    def keys(self, events: Sequence[NewEvent]) -> Program:
        if not events:
            return []
        row = yield Query(
            "lock_intake", {"events": _json_list(_event_json(e, {}) for e in events)}, "one"
        )
        return row["keys"]

    def store(self, items: Sequence[Sending], keys: Sequence[WaitKeys]) -> Program:
        if not items:
            return []
        row = yield Query(
            "store_events", {"events": intake_payload(items), "keys": json.dumps(keys)}, "one"
        )
        answer = row["answer"]
        if answer["work"]:
            yield NOTIFY
        return intake_results(items, answer["results"])


def intake_payload(items: Sequence[Sending]) -> str:
    """The events of ``items`` as PostgreSQL's intake functions take them: each with its time,
    the output its wait steps record and the runs it starts."""
    return _json_list(
        _event_json(
            item.intake.event,
            {
                "ts": item.intake.event.ts,
                "now": item.now,
                "output": wait_output(
                    item.intake.event.id,
                    item.intake.event.name,
                    item.intake.event.data_json,
                    item.intake.event.ts,
                ),
                "runs": [insert_run(run, item.now).params for run in item.intake.runs],
                **(
                    {"expire_keys": True}
                    if any(r.idempotency_window is not None for r in item.intake.runs)
                    else {}
                ),
                **_body_json(item.intake),
            },
        )
        for item in items
    )


def _body_json(intake: EventIntake) -> dict[str, Any]:
    body = intake.body
    if body is None:
        return {}
    return {"body": {"source": body.source, "digest": body.digest, "window": body.window}}


def _event_json(event: NewEvent, fields: dict[str, Any]) -> str:
    """An event as a JSON object, its data embedded as it came (the database parses it once)."""
    rest = json.dumps({"id": event.id, "name": event.name, **fields})
    return f'{{"data": {event.data_json}, {rest[1:]}'


def _json_list(objects: Iterable[str]) -> str:
    return "[" + ", ".join(objects) + "]"


def intake_results(
    items: Sequence[Sending], answers: Sequence[Mapping[str, Any]]
) -> list[IntakeResult]:
    """What PostgreSQL's intake answered, per item."""
    results = []
    for intake, answer in zip((item.intake for item in items), answers, strict=True):
        if answer["duplicate"]:
            # The id it duplicates: its own, or the first delivery's of a body seen already.
            results.append(IntakeResult(answer["id"], tuple(answer["runs"]), duplicate=True))
        else:
            runs = tuple(answer["runs"])
            resumed = tuple(answer["resumed"])
            dropped = answer.get("rate_limited", ())
            debounced = answer.get("debounced", {})
            results.append(
                IntakeResult(
                    intake.event.id,
                    runs,
                    False,
                    resumed,
                    skipped(intake, runs, dropped, debounced),
                )
            )
    return results


def batch_claim(items: Sequence[Sending]) -> ClaimRequest | None:
    """One claim for a batch: the slots its callers hold for the first one's worker."""
    claims = [item.claim for item in items if item.claim is not None]
    if not claims:
        return None
    worker = claims[0]
    limit = sum(c.limit for c in claims if c.worker_id == worker.worker_id)
    return ClaimRequest(worker.worker_id, limit, worker.lease_seconds)


def share_claimed(
    items: Sequence[Sending],
    results: Sequence[IntakeResult],
    claimed: Sequence[ClaimedRun],
    worker: ClaimRequest | None,
) -> list[SentEvents]:
    """Per item, its result and the claimed runs (claimed for ``worker``, the batch's claim)
    that fill the slots it held."""
    left = list(claimed)
    shared = []
    for item, result in zip(items, results, strict=True):
        mine: list[ClaimedRun] = []
        if (
            worker is not None
            and item.claim is not None
            and item.claim.worker_id == worker.worker_id
        ):
            mine, left = left[: item.claim.limit], left[item.claim.limit :]
        shared.append(SentEvents([result], mine))
    return shared


def skipped(
    intake: EventIntake,
    created: Sequence[str],
    rate_limited: Sequence[str],
    debounced: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """The runs of ``intake`` not created, and why: over their rate limit, their idempotency
    key taken, or debounced into a pending run (``debounced``: its id by the run's)."""
    return tuple(
        (run.workflow_id, _why(run, run.id in rate_limited, (debounced or {}).get(run.id)))
        for run in intake.runs
        if run.id not in created
    )


def _why(run: NewRun, rate_limited: bool, debounced: str | None) -> str:
    if debounced is not None:
        return f"debounced into run {debounced}"
    if rate_limited:
        key = f" {run.rate_key}" if run.rate_key else ""
        return f"rate limit{key}: {run.rate_limit} per {run.rate_period:g}s"
    return f"idempotency {run.idempotency_key}"


def expire_idempotency_key(run: NewRun, now: float) -> Query:
    """An older run of the workflow whose idempotency key is past its window gives it up."""
    return Query(
        "expire_idempotency_key",
        {
            "workflow_id": run.workflow_id,
            "idempotency_key": run.idempotency_key,
            "before": now - (run.idempotency_window or 0.0),
        },
    )


def debounce(run: NewRun, now: float) -> Query:
    """The pending run of ``run``'s workflow and debounce key, if any, given ``run``'s event
    and pushed back: answers its id (SQLite's intake; PostgreSQL's store_events does the same)."""
    ev = run.event
    return Query(
        "debounce_run",
        {
            "workflow_id": run.workflow_id,
            "debounce_key": run.debounce_key,
            "debounce_period": run.debounce_period,
            "event_id": ev.id,
            "event_name": ev.name,
            "event_data": ev.data_json,
            "event_ts": ev.ts,
            "now": now,
        },
        "one",
    )


def insert_run(run: NewRun, now: float, query: str = "insert_run") -> Query:
    """A ``queued`` run started by ``run.event`` (nothing if its id or idempotency key is taken);
    with ``insert_debounced_run``, a debounced run waiting for its period."""
    ev = run.event
    return Query(
        query,
        {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "event_id": ev.id,
            "event_name": ev.name,
            "event_data": ev.data_json,
            "event_ts": ev.ts,
            "idempotency_key": run.idempotency_key,
            "parent_run_id": run.parent_run_id,
            "parent_step_key": run.parent_step_key,
            "concurrency_key": run.concurrency_key,
            "priority": run.priority,
            "start_timeout": run.start_timeout,
            "idempotency_window": run.idempotency_window,
            "rate_key": run.rate_key,
            "rate_limit": run.rate_limit,
            "rate_period": run.rate_period,
            "debounce_key": run.debounce_key,
            "debounce_period": run.debounce_period,
            "debounce_max_wait": run.debounce_max_wait,
            "now": now,
        },
        "rowcount",
    )


def run_finished(run_id: str, workflow_id: str, outcome: RunOutcome, now: float) -> EventIntake:
    """The event a finished child run sends its parent (``step.invoke`` waits for it)."""
    data = {
        "run_id": run_id,
        "workflow_id": workflow_id,
        "status": outcome.status,
        "result": json_column(outcome.result_json),
        "error": json_column(outcome.error_json),
    }
    event = NewEvent(f"{run_id}:finished:{now!r}", RUN_FINISHED_EVENT, json.dumps(data), now)
    return EventIntake(event)
