"""Event intake: an event is stored once, starts the runs it triggers and resolves the waits it
matches, in one transaction.

Intake serialises with the waits an event can resolve by their keys' locks
(:func:`lock_for_intake`), so a wait and an event that could match never miss each other. This
is the program SQLite runs; PostgreSQL runs the same steps in one call of its ``intake_events``
function (:func:`intake_call` makes its arguments), one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataflows.records import (
    RUN_FINISHED_EVENT,
    ClaimedRun,
    ClaimRequest,
    EventIntake,
    IntakeResult,
    NewEvent,
    NewRun,
    SentEvents,
)
from dataflows.store.keys import WaitKeys, name_lock, wait_keys, wait_output
from dataflows.store.program import NOTIFY, Program, Query, json_column


@dataclass(frozen=True, slots=True)
class Sending:
    """An event on its way in, with its caller's time and, maybe, the runs to claim for it."""

    intake: EventIntake
    now: float
    claim: ClaimRequest | None = None


def send_each(items: Sequence[Sending]) -> Program:
    """Events sent by several callers (each with its own time), in one transaction."""
    wakes, locks = yield from lock_for_intake([item.intake.event for item in items])
    results = []
    for item, keys in zip(items, wakes, strict=True):
        results.append((yield from intake_one(item.intake, item.now, keys, locks)))
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
    items: Sequence[Sending], results: Sequence[IntakeResult], claimed: Sequence[ClaimedRun]
) -> list[SentEvents]:
    """Per item, its result and the claimed runs that fill the slots it held."""
    worker = batch_claim(items)
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


def lock_for_intake(
    events: Sequence[NewEvent], *, defer: bool = True
) -> Generator[Query, Any, tuple[list[WaitKeys], str]]:
    """Serialise storing these events with the waits they can resolve; per event, its wait keys.

    First every name's lock, shared: no wait registers a new filter shape for these names until
    commit, so the shapes read next are all there are. Then, exclusive, the lock of every wait
    key the events match (see ``lock_wait`` in :mod:`dataflows.store.waits`): a wait with one of
    those keys either committed before (intake then sees and wakes it) or registers after this
    commits (its search then sees the event). Waits on other keys of the same name go on in
    parallel. All locks are taken before any row is touched, names before keys and each set
    sorted, so lockers cannot deadlock on each other.

    Also returns the key locks (a JSON list) the insert of a lone event takes, in the same
    statement, before it is numbered (``defer``, a round trip saved); a batch takes them here,
    all at once.
    """
    if not events:
        return [], "[]"
    names = sorted({event.name for event in events})
    rows = yield Query(
        "lock_wait_shapes",
        {"names": json.dumps(names), "locks": json.dumps([name_lock(n) for n in names])},
        "all",
    )
    shapes: dict[str, list[str]] = {name: [] for name in names}
    for row in rows:
        shapes[row["event_name"]].append(row["filter_paths"])
    wakes, locks = wait_keys(events, shapes)
    if defer and len(events) == 1:
        return wakes, json.dumps(locks)
    if locks:
        yield Query("lock_wait_keys", {"locks": json.dumps(locks)})
    if locks and len(events) > 1:
        # Several events may resolve waits of the same runs: lock those runs in one order.
        every = [[e.name, p, k] for e, ks in zip(events, wakes, strict=True) for p, k in ks]
        yield Query("lock_waiting_runs", {"keys": json.dumps(every)})
    return wakes, "[]"


def intake_one(intake: EventIntake, now: float, keys: WaitKeys, locks: str = "[]") -> Program:
    """Store one event and wake the waits it resolves, under :func:`lock_for_intake`
    (``locks``: the key locks it left to this insert)."""
    event = intake.event
    inserted = yield Query(
        "insert_event",
        {
            "id": event.id,
            "name": event.name,
            "data": event.data_json,
            "ts": event.ts,
            "now": now,
            "locks": locks,
        },
        "rowcount",
    )
    if not inserted:
        rows = yield Query("runs_of_event", {"event_id": event.id}, "all")
        return IntakeResult(event.id, tuple(row["id"] for row in rows), duplicate=True)
    for run in intake.runs:
        yield insert_run(run, now)
    resumed: tuple[str, ...] = ()
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
    if intake.runs or resumed:
        yield NOTIFY
    return IntakeResult(event.id, tuple(r.id for r in intake.runs), False, resumed)


def insert_run(run: NewRun, now: float) -> Query:
    """A ``queued`` run started by ``run.event`` (nothing if its id or idempotency key is taken)."""
    ev = run.event
    return Query(
        "insert_run",
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
            "now": now,
        },
        "rowcount",
    )


def run_finished(
    run_id: str,
    workflow_id: str,
    status: str,
    result_json: str | None,
    error_json: str | None,
    now: float,
) -> Program:
    """Take in the event a finished child run sends its parent (``step.invoke`` waits for it)."""
    data = {
        "run_id": run_id,
        "workflow_id": workflow_id,
        "status": status,
        "result": json_column(result_json),
        "error": json_column(error_json),
    }
    event = NewEvent(f"{run_id}:finished:{now!r}", RUN_FINISHED_EVENT, json.dumps(data), now)
    wakes, locks = yield from lock_for_intake([event])
    yield from intake_one(EventIntake(event), now, wakes[0], locks)


# -- PostgreSQL's intake function -----------------------------------------------------------------


def intake_call(items: Sequence[Sending], shapes: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The arguments of PostgreSQL's ``intake_events`` function: the events of ``items`` with
    the wait keys they match among ``shapes``, which the function checks are all the filter
    shapes registered for their names."""
    events = [item.intake.event for item in items]
    names = sorted({event.name for event in events})
    wakes, locks = wait_keys(events, shapes)
    payload = [
        {
            "id": intake.event.id,
            "name": intake.event.name,
            "data": intake.event.data_json,
            "ts": intake.event.ts,
            "now": now,
            "output": wait_output(
                intake.event.id, intake.event.name, intake.event.data_json, intake.event.ts
            ),
            "keys": keys,
            "runs": [insert_run(run, now).params for run in intake.runs],
        }
        for (intake, now), keys in zip(((i.intake, i.now) for i in items), wakes, strict=True)
    ]
    return {
        "events": json.dumps(payload),
        "shapes": json.dumps({n: sorted(shapes[n]) for n in names if shapes.get(n)}),
        "name_locks": json.dumps([name_lock(n) for n in names]),
        "key_locks": json.dumps(locks),
    }


def intake_results(
    items: Sequence[Sending], answers: Sequence[Mapping[str, Any]]
) -> list[IntakeResult]:
    """What ``intake_events`` answered, per item."""
    results = []
    for intake, answer in zip((item.intake for item in items), answers, strict=True):
        if answer["duplicate"]:
            results.append(IntakeResult(intake.event.id, tuple(answer["runs"]), duplicate=True))
        else:
            runs = tuple(run.id for run in intake.runs)
            resumed = tuple(answer["resumed"])
            results.append(IntakeResult(intake.event.id, runs, False, resumed))
    return results
