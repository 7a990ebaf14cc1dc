"""The store's domain operations, written once for every SQL dialect.

Each operation is a generator (a *program*) that yields ``Query`` values and receives their
results; a backend runs the whole program inside one transaction. The logic lives here, the SQL
in ``sql/<dialect>/queries.sql``, and the backends only move rows.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.records import (
    RUN_FINISHED_EVENT,
    AttemptRow,
    ClaimedRun,
    EventIntake,
    IntakeResult,
    NewEvent,
    NewRun,
    NewStep,
    RunRow,
    StepRow,
    StoredEvent,
    WaitMatch,
    WaitOutcome,
    lookup,
)

Fetch = Literal["none", "one", "all", "rowcount"]


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    params: dict[str, Any]
    fetch: Fetch = "none"


#: Yielded to ask the backend to wake workers once the transaction commits.
NOTIFY = Query("notify_work", {})

Program = Generator[Query, Any, Any]

_EVENT_BATCH = 500


def _json(value: Any) -> Any:
    """Decode a JSON column: text on SQLite, already decoded for ``jsonb`` on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def canonical(value: Any) -> str:
    """A stable text for filter values, so ``1`` and ``1.0`` find each other."""
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"))


def _normalize(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    return value


def _containment(match: WaitMatch) -> str:
    """A ``jsonb`` containment document prefiltering candidate events on PostgreSQL."""
    doc: dict[str, Any] = {}
    for path, value in match.filters:
        node = doc
        parts = path.split(".")[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict | list):
            continue  # containment is looser than equality for these; checked in Python
        node[parts[-1]] = value
    return json.dumps(doc)


# -- intake -------------------------------------------------------------------------------------


def send_each(items: Sequence[tuple[EventIntake, float]]) -> Program:
    """Events sent by several callers (each with its own time), in one transaction."""
    wakes, locks = yield from _lock_for_intake([intake.event for intake, _ in items])
    results = []
    for (intake, now), keys in zip(items, wakes, strict=True):
        results.append((yield from _intake(intake, now, keys, locks)))
    return results


#: The wait keys (filter paths, filter key) an event can resolve, as ``_lock_for_intake`` found.
WaitKeys = list[tuple[str, str]]


def _wait_output(event_id: str, name: str, data_json: str, ts: float) -> str:
    """What a wait step records: the event that resolved it (``data_json`` as stored)."""
    return (
        f'{{"id": {json.dumps(event_id)}, "name": {json.dumps(name)}, '
        f'"data": {data_json}, "ts": {json.dumps(ts)}}}'
    )


def _name_lock(event_name: str) -> str:
    return json.dumps(["event", event_name])


def _key_lock(event_name: str, paths: str, key: str) -> str:
    return json.dumps(["wait", event_name, paths, key])


def _lock_for_intake(
    events: Sequence[NewEvent], *, defer: bool = True
) -> Generator[Query, Any, tuple[list[WaitKeys], str]]:
    """Serialise storing these events with the waits they can resolve; per event, its wait keys.

    First every name's lock, shared: no wait registers a new filter shape for these names until
    commit, so the shapes read next are all there are. Then, exclusive, the lock of every wait
    key the events match (see ``lock_wait`` in begin_wait): a wait with one of those keys either
    committed before (intake then sees and wakes it) or registers after this commits (its search
    then sees the event). Waits on other keys of the same name go on in parallel. All locks are
    taken before any row is touched, names before keys and each set sorted, so lockers cannot
    deadlock on each other.

    Also returns the key locks (a JSON list) the insert of a lone event takes, in the same
    statement, before it is numbered (``defer``, a round trip saved); a batch takes them here,
    all at once.
    """
    if not events:
        return [], "[]"
    names = sorted({event.name for event in events})
    rows = yield Query(
        "lock_wait_shapes",
        {"names": json.dumps(names), "locks": json.dumps([_name_lock(n) for n in names])},
        "all",
    )
    shapes: dict[str, list[str]] = {name: [] for name in names}
    for name, paths in rows:
        shapes[name].append(paths)
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


def wait_keys(
    events: Sequence[NewEvent], shapes: Mapping[str, Sequence[str]]
) -> tuple[list[WaitKeys], list[str]]:
    """Per event, the wait keys (filter paths, filter key) it matches among ``shapes`` (filter
    paths by event name); and the locks of all those keys, sorted."""
    wakes: list[WaitKeys] = []
    locks: set[str] = set()
    for event in events:
        keys: WaitKeys = []
        if shapes.get(event.name):
            data = json.loads(event.data_json)
            for paths in shapes[event.name]:
                found = [lookup(data, path) for path in json.loads(paths)]
                if all(ok for ok, _ in found):
                    keys.append((paths, canonical([value for _, value in found])))
            locks.update(_key_lock(event.name, paths, key) for paths, key in keys)
        wakes.append(keys)
    return wakes, sorted(locks)


def intake_call(
    items: Sequence[tuple[EventIntake, float]], shapes: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """The arguments of PostgreSQL's ``intake_events`` function (migrations 0003, 0004): the
    events of ``items`` with the wait keys they match among ``shapes``, which the function
    checks are all the filter shapes registered for their names."""
    events = [intake.event for intake, _ in items]
    names = sorted({event.name for event in events})
    wakes, locks = wait_keys(events, shapes)
    payload = [
        {
            "id": intake.event.id,
            "name": intake.event.name,
            "data": intake.event.data_json,
            "ts": intake.event.ts,
            "now": now,
            "output": _wait_output(
                intake.event.id, intake.event.name, intake.event.data_json, intake.event.ts
            ),
            "keys": keys,
            "runs": [_insert_run(run, now).params for run in intake.runs],
        }
        for (intake, now), keys in zip(items, wakes, strict=True)
    ]
    return {
        "events": json.dumps(payload),
        "shapes": json.dumps({n: sorted(shapes[n]) for n in names if shapes.get(n)}),
        "name_locks": json.dumps([_name_lock(n) for n in names]),
        "key_locks": json.dumps(locks),
    }


def intake_results(
    items: Sequence[tuple[EventIntake, float]], answers: Sequence[Mapping[str, Any]]
) -> list[IntakeResult]:
    """What ``intake_events`` answered, per item."""
    results = []
    for (intake, _), answer in zip(items, answers, strict=True):
        if answer["duplicate"]:
            results.append(IntakeResult(intake.event.id, tuple(answer["runs"]), duplicate=True))
        else:
            runs = tuple(run.id for run in intake.runs)
            resumed = tuple(answer["resumed"])
            results.append(IntakeResult(intake.event.id, runs, False, resumed))
    return results


def _intake(intake: EventIntake, now: float, keys: WaitKeys, locks: str = "[]") -> Program:
    """Store one event and wake the waits it resolves, under ``_lock_for_intake`` (``locks``:
    the key locks it left to this insert)."""
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
        return IntakeResult(event.id, tuple(r[0] for r in rows), duplicate=True)
    for run in intake.runs:
        yield _insert_run(run, now)
    resumed: tuple[str, ...] = ()
    if keys:
        rows = yield Query(
            "resolve_waits",
            {
                "event_name": event.name,
                "keys": json.dumps(keys),
                "event_id": event.id,
                "output": _wait_output(event.id, event.name, event.data_json, event.ts),
                "now": now,
            },
            "all",
        )
        resumed = tuple(sorted({row[0] for row in rows}))
    if intake.runs or resumed:
        yield NOTIFY
    return IntakeResult(event.id, tuple(r.id for r in intake.runs), False, resumed)


def _insert_run(run: NewRun, now: float) -> Query:
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


def start_run(run: NewRun, now: float) -> Program:
    created = yield _insert_run(run, now)
    if created:
        yield NOTIFY
        return (run.id, True)
    row = yield Query(
        "run_by_idempotency_key",
        {"workflow_id": run.workflow_id, "idempotency_key": run.idempotency_key},
        "one",
    )
    if row is not None:
        return (row[0], False)
    # Not an idempotency hit: the run id exists, from a retry whose first answer was lost.
    if (yield Query("run_status", {"run_id": run.id}, "one")) is not None:
        return (run.id, False)
    raise RuntimeError(f"run {run.id!r} could not be created")


# -- the worker's side --------------------------------------------------------------------------


def claim_runs(worker_id: str, limit: int, lease_seconds: float, now: float) -> Program:
    """Claim runs, recording their due sleeps as elapsed; each with its history."""
    rows = yield Query(
        "claim_runs",
        {"worker_id": worker_id, "limit": limit, "lease_until": now + lease_seconds, "now": now},
        "all",
    )
    return claimed_runs(rows)


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
            history.append(_step_row(r[10:]))
    return [
        ClaimedRun(
            id=r[0],
            workflow_id=r[1],
            event=StoredEvent(r[2], r[3], _json(r[4]), r[5]),
            created_at=r[6],
            lease_token=r[7],
            recoveries=r[8],
            parent_run_id=r[9],
            history=tuple(history),
        )
        for r, history in runs.values()
    ]


def heartbeat(worker_id: str, run_ids: Sequence[str], lease_seconds: float, now: float) -> Program:
    rows = yield Query(
        "heartbeat",
        {
            "worker_id": worker_id,
            "run_ids": json.dumps(list(run_ids)),
            "lease_until": now + lease_seconds,
        },
        "all",
    )
    return {r[0] for r in rows}


def load_history(run_id: str) -> Program:
    rows = yield Query("load_history", {"run_id": run_id}, "all")
    return [_step_row(r) for r in rows]


def _step_row(r: Sequence[Any]) -> StepRow:
    return StepRow(
        key=r[0],
        kind=r[1],
        status=r[2],
        output=_json(r[3]),
        error=_json(r[4]),
        attempts=r[5],
        started_at=r[6],
        completed_at=r[7],
        wake_at=r[8],
        event_id=r[9],
    )


def record_step(
    run_id: str, lease_token: int, step: NewStep, now: float, events: Sequence[EventIntake] = ()
) -> Program:
    # Every advisory lock before the step's insert locks the run's row: none deferred.
    wakes, locks = yield from _lock_for_intake([intake.event for intake in events], defer=False)
    inserted = yield record_step_query(run_id, lease_token, step, now)
    if not inserted:  # fenced, or recorded already: by this holder, whose answer was lost
        return (yield from _holds_lease(run_id, lease_token))
    for intake, keys in zip(events, wakes, strict=True):
        yield from _intake(intake, now, keys, locks)
    return True


def record_step_query(run_id: str, lease_token: int, step: NewStep, now: float) -> Query:
    """One fenced insert of ``step``; for a wait's step (a sleep waited out in the worker) the
    wait goes in the same statement."""
    return Query(
        "record_step" if step.kind == "run" else "record_wait_step",
        {
            "run_id": run_id,
            "lease_token": lease_token,
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


def record_steps_counts(queries: Sequence[Query], inserted: Sequence[Sequence[Any]]) -> list[int]:
    """Per query, 1 if the multi-row insert recorded its step (it returns run ids and keys)."""
    done = {(row[0], row[1]) for row in inserted}
    return [int((q.params["run_id"], q.params["key"]) in done) for q in queries]


def record_attempt(
    run_id: str,
    lease_token: int,
    key: str,
    attempt: int,
    error_json: str,
    started_at: float,
    retry_at: float,
    now: float,
) -> Program:
    inserted = yield Query(
        "record_attempt",
        {
            "run_id": run_id,
            "lease_token": lease_token,
            "key": key,
            "attempt": attempt,
            "error": error_json,
            "started_at": started_at,
            "retry_at": retry_at,
            "now": now,
        },
        "rowcount",
    )
    if not inserted:  # fenced, or recorded already: by this holder, whose answer was lost
        return (yield from _holds_lease(run_id, lease_token))
    return True


def _holds_lease(run_id: str, lease_token: int) -> Program:
    held = yield Query("holds_lease", {"run_id": run_id, "lease_token": lease_token}, "one")
    return held is not None


def begin_wait(
    run_id: str,
    lease_token: int,
    key: str,
    kind: str,
    wake_at: float | None,
    match: WaitMatch | None,
    since: float,
    trigger_event_id: str,
    now: float,
) -> Program:
    shape = None if match is None else _WaitShape.of(match)
    shape_known = True
    if shape is not None:
        # Serialises with the intake of the events that can resolve this wait: whichever
        # commits second sees the other (see _lock_for_intake).
        row = yield Query(
            "lock_wait",
            {
                "event_name": shape.event_name,
                "filter_paths": shape.paths,
                "key_lock": _key_lock(shape.event_name, shape.paths, shape.key),
                "name_lock": _name_lock(shape.event_name),
            },
            "one",
        )
        shape_known = bool(row[0])
    state = yield Query(
        "wait_state", {"run_id": run_id, "lease_token": lease_token, "key": key}, "one"
    )
    if state is None:
        return WaitOutcome("fenced")
    if state[1]:
        return (yield from _recorded_wait(run_id, key))
    if state[2] is None:  # reached for the first time
        if shape is not None and not shape_known:
            yield Query(
                "insert_wait_shape", {"event_name": shape.event_name, "filter_paths": shape.paths}
            )
        yield _insert_wait(run_id, key, kind, wake_at, shape, now)
        deadline, started, after = wake_at, now, 0
    else:
        # A sleep's duration runs from when it was reached; events that can resolve the wait
        # came after it was registered.
        deadline, started, after = state[0], state[2], state[3]
    if match is not None:
        event = yield from _find_event(run_id, match, since, trigger_event_id, after)
        if event is not None:
            output = _wait_output(event.id, event.name, json.dumps(event.data), event.ts)
            step = NewStep(key, kind, "completed", output, None, 1, started, event.id)  # type: ignore[arg-type]
            yield from record_step(run_id, lease_token, step, now)
            return WaitOutcome("resolved", event=event)
    if deadline is not None and now >= deadline:
        step = NewStep(key, kind, "completed", "null", None, 1, started)  # type: ignore[arg-type]
        yield from record_step(run_id, lease_token, step, now)
        return WaitOutcome("resolved")
    return WaitOutcome("pending", wake_at=deadline)


@dataclass(frozen=True, slots=True)
class _WaitShape:
    """A wait's event name, filter paths (its shape) and filter values (its key), as stored."""

    event_name: str
    paths: str
    key: str

    @classmethod
    def of(cls, match: WaitMatch) -> _WaitShape:
        filters = sorted(match.filters, key=lambda f: f[0])
        return cls(
            match.event_name,
            json.dumps([p for p, _ in filters]),
            canonical([v for _, v in filters]),
        )


def _recorded_wait(run_id: str, key: str) -> Program:
    """The outcome already recorded: a retry of a call whose commit went through unanswered."""
    for row in (yield from load_history(run_id)):
        if row.key == key and row.event_id is not None:
            out = row.output
            return WaitOutcome(
                "resolved", StoredEvent(out["id"], out["name"], out["data"], out["ts"])
            )
    return WaitOutcome("resolved")


def _insert_wait(
    run_id: str, key: str, kind: str, wake_at: float | None, shape: _WaitShape | None, now: float
) -> Query:
    return Query(
        "insert_wait",
        {
            "run_id": run_id,
            "key": key,
            "kind": kind,
            "wake_at": wake_at,
            "event_name": None if shape is None else shape.event_name,
            "filter_paths": None if shape is None else shape.paths,
            "filter_key": None if shape is None else shape.key,
            "now": now,
        },
    )


def _find_event(
    run_id: str, match: WaitMatch, since: float, trigger_event_id: str, after: int
) -> Program:
    """The first stored event after sequence number ``after`` that resolves the wait, if any."""
    while True:
        rows = yield Query(
            "candidate_events",
            {
                "event_name": match.event_name,
                "since": since,
                "after_seq": after,
                "own_event_id": trigger_event_id,
                "run_id": run_id,
                "containment": _containment(match),
                "batch": _EVENT_BATCH,
            },
            "all",
        )
        for seq, event_id, name, data, ts in rows:
            decoded = _json(data)
            if match.matches(name, decoded):
                return StoredEvent(event_id, name, decoded, ts)
            after = seq
        if len(rows) < _EVENT_BATCH:
            return None


def suspend_run(
    run_id: str, lease_token: int, wake_at: float | None, reason: str, now: float
) -> Program:
    changed = yield Query(
        "suspend_run",
        {
            "run_id": run_id,
            "lease_token": lease_token,
            "wake_at": wake_at,
            "reason": reason,
            "now": now,
        },
        "rowcount",
    )
    # One statement, so it commits on its own. No cross-process wake-up: only this process's
    # workers (woken by the store after it) need to see a run queued again or a new timer.
    return bool(changed)


def finish_run(
    run_id: str,
    lease_token: int,
    status: str,
    result_json: str | None,
    error_json: str | None,
    now: float,
) -> Program:
    rows = yield Query(
        "finish_run",
        {
            "run_id": run_id,
            "lease_token": lease_token,
            "status": status,
            "result": result_json,
            "error": error_json,
            "now": now,
        },
        "all",
    )
    if not rows:
        return False
    workflow_id, parent_run_id = rows[0]
    if parent_run_id is not None:
        yield from _tell_parent(run_id, workflow_id, status, result_json, error_json, now)
    return True


def _tell_parent(
    run_id: str,
    workflow_id: str,
    status: str,
    result_json: str | None,
    error_json: str | None,
    now: float,
) -> Program:
    data = {
        "run_id": run_id,
        "workflow_id": workflow_id,
        "status": status,
        "result": _json(result_json),
        "error": _json(error_json),
    }
    event = NewEvent(f"{run_id}:finished:{now!r}", RUN_FINISHED_EVENT, json.dumps(data), now)
    wakes, locks = yield from _lock_for_intake([event])
    yield from _intake(EventIntake(event), now, wakes[0], locks)


def release_run(run_id: str, lease_token: int, now: float) -> Program:
    changed = yield Query(
        "release_run", {"run_id": run_id, "lease_token": lease_token, "now": now}, "rowcount"
    )
    if changed:
        yield NOTIFY
    return bool(changed)


def next_wake_at() -> Program:
    row = yield Query("next_wake_at", {}, "one")
    return None if row is None else row[0]


# -- the client's side --------------------------------------------------------------------------


def _run_row(
    r: Sequence[Any], steps: tuple[StepRow, ...] = (), attempts: tuple[AttemptRow, ...] = ()
) -> RunRow:
    return RunRow(
        id=r[0],
        workflow_id=r[1],
        status=r[2],
        event=StoredEvent(r[3], r[4], _json(r[5]), r[6]),
        result=_json(r[7]),
        error=_json(r[8]),
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


def get_run(run_id: str) -> Program:
    """The run with its history and every failed attempt of its retried steps."""
    row = yield Query("get_run", {"run_id": run_id}, "one")
    if row is None:
        return None
    steps = yield from load_history(run_id)
    attempts = yield Query("load_attempts", {"run_id": run_id}, "all")
    return _run_row(row, tuple(steps), tuple(_attempt_row(r) for r in attempts))


def _attempt_row(r: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        key=r[0], attempt=r[1], error=_json(r[2]), started_at=r[3], failed_at=r[4], retry_at=r[5]
    )


def run_status(run_id: str) -> Program:
    row = yield Query("run_status", {"run_id": run_id}, "one")
    return None if row is None else row[0]


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
    return [_run_row(r) for r in rows]


def cancel_run(run_id: str, now: float) -> Program:
    error = json.dumps({"type": "Cancelled", "message": "the run was cancelled"})
    rows = yield Query("cancel_run", {"run_id": run_id, "now": now, "error": error}, "all")
    if not rows:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        return str(row[0])
    yield Query("delete_run_waits", {"run_id": run_id})
    workflow_id, parent_run_id = rows[0]
    if parent_run_id is not None:
        yield from _tell_parent(run_id, workflow_id, "cancelled", None, error, now)
    yield NOTIFY  # a worker holding it learns at its next heartbeat; this wakes waiters of it
    return "cancelled"


def retry_run(run_id: str, now: float) -> Program:
    changed = yield Query("requeue_run", {"run_id": run_id, "now": now}, "rowcount")
    if not changed:
        row = yield Query("run_status", {"run_id": run_id}, "one")
        if row is None:
            raise RunNotFound(run_id)
        raise InvalidRunState(run_id, row[0], "retry")
    yield Query("forget_failed_steps", {"run_id": run_id})
    yield Query("forget_attempts", {"run_id": run_id})
    yield NOTIFY
    return "queued"


def run_counts() -> Program:
    rows = yield Query("run_counts", {}, "all")
    return [(r[0], r[1], int(r[2])) for r in rows]


def purge_finished(before: float, batch: int) -> Program:
    rows = yield Query("finished_runs_before", {"before": before, "batch": batch}, "all")
    for (run_id,) in rows:
        for name in ("purge_steps", "purge_attempts", "purge_waits", "purge_run"):
            yield Query(name, {"run_id": run_id})
    events = yield Query("purge_events", {"before": before, "batch": batch}, "rowcount")
    return len(rows) + events
