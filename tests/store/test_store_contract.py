"""The Store interface's contract, run on SQLite and PostgreSQL alike.

Times are handed in by the test (the engine's clock does it in production), so every deadline
and lease expiry here is exact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.records import (
    RETRY_MARK,
    BodyKey,
    EventIntake,
    FailedAttempt,
    Lease,
    NewRun,
    NewWait,
    WaitMatch,
)
from dataflows.store import Store
from dataflows.store.sql_store import SqlStore
from tests.pg import DbTarget
from tests.store.builders import LEASE, T0, event, new_run, running, send, status, step, wait_for
from tests.store.conftest import new_store

# -- migrations ------------------------------------------------------------------------------------


async def test_migrations_apply_once(db: DbTarget) -> None:
    first = new_store(db)
    await first.open(migrate=False)
    try:
        assert await first.migrate() == [
            "0001_initial",
            "0002_wait_after_seq",
            "0003_intake_function",
            "0004_eager_claim",
            "0005_resumed_runs",
            "0006_wait_keys_in_sql",
            "0007_worker_liveness",
            "0008_webhook_bodies",
            "0009_schedules",
            "0010_cancellation",
            "0011_step_budgets",
            "0012_flow_control",
            "0013_throttle_debounce",
            "0014_budget_line",
            "0015_cancel_on_wakes",
            "0016_run_versions",
            "0017_lean_claim_intake",
            "0018_webhook_rejections",
            "0019_worker_offers",
            "0020_start_function",
        ]
        assert await first.migrate() == []
    finally:
        await first.close()
    second = new_store(db)
    await second.open()  # migrates: nothing left to do, and the data is usable
    try:
        assert await second.migrate() == []
        assert (await second.start_run(new_run("r1"), T0)) == ("r1", True)
    finally:
        await second.close()


async def test_concurrent_migrations_apply_once(db: DbTarget) -> None:
    stores = [new_store(db) for _ in range(4)]
    for s in stores:
        await s.open(migrate=False)
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert sorted(name for applied in results for name in applied) == [
        "0001_initial",
        "0002_wait_after_seq",
        "0003_intake_function",
        "0004_eager_claim",
        "0005_resumed_runs",
        "0006_wait_keys_in_sql",
        "0007_worker_liveness",
        "0008_webhook_bodies",
        "0009_schedules",
        "0010_cancellation",
        "0011_step_budgets",
        "0012_flow_control",
        "0013_throttle_debounce",
        "0014_budget_line",
        "0015_cancel_on_wakes",
        "0016_run_versions",
        "0017_lean_claim_intake",
        "0018_webhook_rejections",
        "0019_worker_offers",
        "0020_start_function",
    ]


# -- intake ----------------------------------------------------------------------------------------


async def test_send_events_creates_runs_and_dedupes(store: Store) -> None:
    e1 = event("e1", data={"order": 1})
    intake = EventIntake(e1, (NewRun("a", "wf-a", e1), NewRun("b", "wf-b", e1)))
    [first] = (await store.send_events([intake], T0)).results
    assert (first.event_id, first.run_ids, first.duplicate) == ("e1", ("a", "b"), False)

    # The same event again, even with other run ids: nothing new, the first runs reported.
    again = EventIntake(e1, (NewRun("c", "wf-a", e1),))
    [second] = (await store.send_events([again], T0 + 1)).results
    assert (second.run_ids, second.duplicate) == (("a", "b"), True)
    assert await store.get_run("c") is None

    run = await store.get_run("a")
    assert run is not None
    assert (run.status, run.workflow_id, run.created_at) == ("queued", "wf-a", T0)
    assert (run.event.id, run.event.data) == ("e1", {"order": 1})


async def test_a_body_seen_within_its_window_is_a_duplicate_of_its_first_event(
    store: Store,
) -> None:
    """In one transaction too: the second intake of a body finds the row the first just wrote.
    Bodies of other sources, or other digests, are never merged."""

    def intake(event_id: str, run_id: str, digest: str = "d1", source: str = "hook") -> EventIntake:
        e = event(event_id)
        return EventIntake(e, (NewRun(run_id, "wf", e),), BodyKey(source, digest, 60.0))

    sent = await store.send_events(
        [
            intake("e1", "a"),
            intake("e2", "b"),
            intake("e3", "c", "d2"),
            intake("e4", "d", "d1", "other"),
        ],
        T0,
    )
    assert [(r.event_id, r.run_ids, r.duplicate) for r in sent.results] == [
        ("e1", ("a",), False),
        ("e1", ("a",), True),
        ("e3", ("c",), False),
        ("e4", ("d",), False),
    ]
    [replayed] = (await store.send_events([intake("e5", "e")], T0 + 59)).results
    assert (replayed.event_id, replayed.run_ids, replayed.duplicate) == ("e1", ("a",), True)
    [late] = (await store.send_events([intake("e6", "f")], T0 + 60)).results
    assert (late.event_id, late.run_ids, late.duplicate) == ("e6", ("f",), False)
    for run_id in ("b", "e"):
        assert await store.get_run(run_id) is None


async def test_start_run_idempotency_key(store: Store) -> None:
    assert await store.start_run(new_run("r1", idempotency_key="k"), T0) == ("r1", True)
    assert await store.start_run(new_run("r2", idempotency_key="k"), T0) == ("r1", False)
    # Keys are per workflow; runs without a key never collide.
    assert await store.start_run(new_run("r3", "other", idempotency_key="k"), T0) == ("r3", True)
    assert await store.start_run(new_run("r4"), T0) == ("r4", True)
    assert await store.start_run(new_run("r5"), T0) == ("r5", True)
    # The same run again (a retry whose first answer was lost): found, not created twice.
    assert await store.start_run(new_run("r5"), T0 + 1) == ("r5", False)


async def test_starts_sharing_a_batch_are_answered_each(store: Store) -> None:
    assert isinstance(store, SqlStore)
    assert await store.start_run(new_run("old"), T0) == ("old", True)
    before = store.start_batches
    answers = await asyncio.gather(
        store.start_run(new_run("a", idempotency_key="k"), T0),  # alone: the first batch
        store.start_run(new_run("b", idempotency_key="k"), T0),  # the others share the next
        store.start_run(new_run("c"), T0),
        store.start_run(new_run("old"), T0 + 1),  # a retry whose first answer was lost
        store.start_run(new_run("d", "other", idempotency_key="k"), T0),
        store.start_run(new_run("e", "other", idempotency_key="k"), T0),
        store.start_run(new_run("f", idempotency_key="j"), T0),
        store.start_run(new_run("g", idempotency_key="j"), T0),
    )
    assert store.start_batches - before == 2
    assert answers == [
        ("a", True),
        ("a", False),
        ("c", True),
        ("old", False),
        ("d", True),
        ("d", False),
        ("f", True),
        ("f", False),
    ]
    for run_id in ("b", "e", "g"):
        assert await store.get_run(run_id) is None
    row = await store.get_run("old")
    assert row is not None and row.created_at == T0


async def test_batches_in_opposite_orders_do_not_deadlock(store: Store, other: Store) -> None:
    def batch(tag: str, names: list[str]) -> list[EventIntake]:
        return [EventIntake(event(f"{tag}-{name}", name)) for name in names]

    sends = []
    for i in range(20):
        sends.append(store.send_events(batch(f"x{i}", ["alpha", "beta", "gamma"]), T0))
        sends.append(other.send_events(batch(f"y{i}", ["gamma", "beta", "alpha"]), T0))
    results = await asyncio.gather(*sends)
    assert all(not r.duplicate for sent in results for r in sent.results)


# -- claiming and leases ---------------------------------------------------------------------------


async def test_claim_leases_oldest_first(store: Store) -> None:
    for i in range(3):
        await store.start_run(new_run(f"r{i}"), T0 + i)
    first = await store.claim_runs("w1", 2, LEASE, T0 + 10)
    assert [c.id for c in first] == ["r0", "r1"]
    assert all(c.lease_token == 1 and c.recoveries == 0 for c in first)
    assert first[0].event.id == "r0/trigger" and first[0].created_at == T0
    rest = await store.claim_runs("w2", 5, LEASE, T0 + 10)
    assert [c.id for c in rest] == ["r2"]
    assert await store.claim_runs("w3", 5, LEASE, T0 + 11) == []  # all leased
    assert await status(store, "r0") == "running"

    # Released and claimed again: a new lease token, and not a recovery.
    assert await store.release_run(Lease("r0", 1), T0 + 12)
    [again] = await store.claim_runs("w3", 5, LEASE, T0 + 13)
    assert (again.id, again.lease_token, again.recoveries) == ("r0", 2, 0)


async def test_concurrent_claims_never_share_a_run(store: Store, other: Store) -> None:
    runs = [f"r{i:02d}" for i in range(40)]
    for i, run_id in enumerate(runs):
        await store.start_run(new_run(run_id), T0 + i)
    claims = [
        (store if i % 2 else other).claim_runs(f"w{i}", 3, LEASE, T0 + 100) for i in range(30)
    ]
    claimed = [c.id for batch in await asyncio.gather(*claims) for c in batch]
    assert len(claimed) == len(set(claimed))
    leftover = [c.id for c in await store.claim_runs("w-last", 100, LEASE, T0 + 100)]
    assert sorted(claimed + leftover) == runs


async def test_expired_lease_is_recovered_and_the_old_holder_fenced(store: Store) -> None:
    [held] = await running(store, "r1")
    assert await store.claim_runs("w2", 1, LEASE, T0 + LEASE - 1) == []
    [taken] = await store.claim_runs("w2", 1, LEASE, T0 + LEASE + 1)
    assert (taken.id, taken.lease_token, taken.recoveries) == ("r1", 2, 1)

    stale = held.lease_token
    assert not await store.record_step(Lease("r1", stale), step("a"), T0 + 40)
    assert not await store.record_attempt(
        Lease("r1", stale), FailedAttempt("b", 1, "{}", T0, T0 + 50), T0 + 40
    )
    assert (await wait_for(store, held, "w", WaitMatch("x"), T0 + 40)).state == "fenced"
    assert not await store.suspend_run(Lease("r1", stale), None, "sleep", T0 + 40)
    assert not await store.complete_run(Lease("r1", stale), "1", T0 + 40)
    assert not await store.fail_run(Lease("r1", stale), "{}", T0 + 40)
    assert not await store.release_run(Lease("r1", stale), T0 + 40)
    assert await store.heartbeat("w1", ["r1"], LEASE, T0 + 40) == set()
    assert await store.load_history("r1") == []
    assert await status(store, "r1") == "running"

    assert await store.record_step(Lease("r1", taken.lease_token), step("a"), T0 + 41)
    assert await store.complete_run(Lease("r1", taken.lease_token), '"ok"', T0 + 42)
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.result, run.recoveries) == ("completed", "ok", 1)


async def test_heartbeat_extends_the_leases_held(store: Store) -> None:
    await running(store, "r1", "r2")
    assert await store.heartbeat("w1", ["r1", "r2", "r3"], LEASE, T0 + 20) == {"r1", "r2"}
    assert await store.heartbeat("nobody", ["r1", "r2"], LEASE, T0 + 20) == set()
    assert await store.claim_runs("w2", 5, LEASE, T0 + LEASE + 5) == []
    assert len(await store.claim_runs("w2", 5, LEASE, T0 + 20 + LEASE + 1)) == 2


# -- steps -----------------------------------------------------------------------------------------


async def test_record_step_never_overwrites(store: Store) -> None:
    [run] = await running(store, "r1")
    assert await store.record_step(Lease("r1", run.lease_token), step("a", {"v": 1}), T0 + 1)
    # True: still the holder, so a retry (the first answer lost) is not taken for a lost lease.
    assert await store.record_step(Lease("r1", run.lease_token), step("a", {"v": 2}), T0 + 2)
    [row] = await store.load_history("r1")
    assert (row.key, row.status, row.output, row.completed_at) == (
        "a",
        "completed",
        {"v": 1},
        T0 + 1,
    )


async def test_record_step_sends_its_events(store: Store) -> None:
    [run] = await running(store, "r1")
    child_event = event("sent-1", "order/shipped")
    intake = EventIntake(child_event, (NewRun("r2", "shipper", child_event),))
    assert await store.record_step(
        Lease("r1", run.lease_token), step("send", kind="send", sends=(intake,)), T0
    )
    assert await status(store, "r2") == "queued"
    # A fenced record sends nothing.
    intake = EventIntake(event("sent-2"), (NewRun("r3", "x", event("sent-2")),))
    assert not await store.record_step(
        Lease("r1", 99), step("send2", kind="send", sends=(intake,)), T0
    )
    assert await store.get_run("r3") is None


async def test_load_history_shows_recorded_retrying_and_waiting_steps(store: Store) -> None:
    [run] = await running(store, "r1")
    token = run.lease_token
    assert await store.record_step(Lease("r1", token), step("done", 42, started_at=T0 + 1), T0 + 2)
    assert await store.record_step(
        Lease("r1", token), step("bad", status="failed", started_at=T0 + 3), T0 + 4
    )
    assert await store.record_attempt(
        Lease("r1", token), FailedAttempt("flaky", 1, '{"n": 1}', T0 + 5, T0 + 7), T0 + 6
    )
    assert await store.record_attempt(
        Lease("r1", token), FailedAttempt("flaky", 2, '{"n": 2}', T0 + 8, T0 + 20), T0 + 9
    )
    assert await store.record_attempt(
        Lease("r1", token), FailedAttempt("flaky", 2, '{"n": 9}', T0 + 8, T0), T0 + 9
    )
    nap = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 99, None, T0, ""), T0 + 10
    )
    assert (nap.state, nap.wake_at) == ("pending", T0 + 99)

    rows = {r.key: r for r in await store.load_history("r1")}
    assert [r.key for r in await store.load_history("r1")] == ["done", "bad", "flaky", "nap"]
    assert (rows["done"].status, rows["done"].output, rows["done"].attempts) == ("completed", 42, 1)
    assert (rows["bad"].status, rows["bad"].error) == ("failed", {"type": "Boom"})
    flaky = rows["flaky"]
    assert (flaky.status, flaky.attempts, flaky.error, flaky.wake_at) == (
        "retrying",
        2,
        {"n": 2},
        T0 + 20,
    )
    assert (rows["nap"].status, rows["nap"].kind, rows["nap"].wake_at) == (
        "waiting",
        "sleep",
        T0 + 99,
    )

    # Recording the retried step replaces its retrying row; resolving the sleep its waiting row.
    assert await store.record_step(
        Lease("r1", token), step("flaky", "ok", started_at=T0 + 5), T0 + 21
    )
    slept = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 99, None, T0, ""), T0 + 99
    )
    assert slept.state == "resolved" and slept.event is None
    rows = {r.key: r for r in await store.load_history("r1")}
    assert (rows["flaky"].status, rows["flaky"].output) == ("completed", "ok")
    assert (rows["nap"].status, rows["nap"].output, rows["nap"].kind) == (
        "completed",
        None,
        "sleep",
    )


async def test_claim_returns_history_and_records_due_sleeps(store: Store) -> None:
    [run] = await running(store, "r1")
    token = run.lease_token
    assert run.history == ()  # a first claim: nothing recorded yet
    assert await store.record_step(Lease("r1", token), step("done", 42, started_at=T0 + 1), T0 + 2)
    soon = await store.begin_wait(
        Lease("r1", token), NewWait("soon", "sleep", T0 + 50, None, T0, ""), T0 + 3
    )
    late = await store.begin_wait(
        Lease("r1", token), NewWait("late", "sleep", T0 + 90, None, T0, ""), T0 + 4
    )
    assert (soon.state, late.state) == ("pending", "pending")
    assert await store.suspend_run(Lease("r1", token), T0 + 50, "sleep soon", T0 + 5)

    assert await store.claim_runs("w1", 5, LEASE, T0 + 49.999) == []  # never early
    [again] = await store.claim_runs("w1", 5, LEASE, T0 + 50)
    assert again.lease_token == token + 1
    rows = {r.key: r for r in again.history}
    assert [r.key for r in again.history] == ["done", "soon", "late"]
    assert (rows["done"].status, rows["done"].output) == ("completed", 42)
    # The due sleep was recorded by the claim, from when it was reached; the other still waits.
    assert (rows["soon"].status, rows["soon"].started_at, rows["soon"].completed_at) == (
        "completed",
        T0 + 3,
        T0 + 50,
    )
    assert (rows["late"].status, rows["late"].wake_at) == ("waiting", T0 + 90)
    assert [(r.key, r.status) for r in await store.load_history("r1")] == [
        ("done", "completed"),
        ("soon", "completed"),
        ("late", "waiting"),
    ]
    # Replaying the elapsed sleep finds it recorded, as when begin_wait recorded it.
    replay = await store.begin_wait(
        Lease("r1", again.lease_token), NewWait("soon", "sleep", T0 + 60, None, T0, ""), T0 + 51
    )
    assert (replay.state, replay.event) == ("resolved", None)


# -- the client's side -----------------------------------------------------------------------------


async def test_cancel_run(store: Store) -> None:
    await store.start_run(new_run("queued"), T0)
    assert await store.cancel_run("queued", T0 + 1) == "cancelled"
    run = await store.get_run("queued")
    assert run is not None and run.status == "cancelled" and run.completed_at == T0 + 1
    assert run.error is not None and run.error["type"] == "Cancelled"
    assert await store.cancel_run("queued", T0 + 2) == "cancelled"

    [held] = await running(store, "held", now=T0 + 3)
    assert await store.cancel_run("held", T0 + 4) == "cancelled"
    assert not await store.record_step(Lease("held", held.lease_token), step("a"), T0 + 5)
    assert not await store.complete_run(Lease("held", held.lease_token), "1", T0 + 5)

    [done] = await running(store, "done", now=T0 + 6)
    assert await store.complete_run(Lease("done", done.lease_token), "1", T0 + 7)
    assert await store.cancel_run("done", T0 + 8) == "completed"
    with pytest.raises(RunNotFound):
        await store.cancel_run("missing", T0)


async def test_retry_run_keeps_results_and_forgets_failures(store: Store) -> None:
    [run] = await running(store, "r1")
    token = run.lease_token
    assert await store.record_step(Lease("r1", token), step("good", "kept"), T0 + 1)
    assert await store.record_step(Lease("r1", token), step("bad", status="failed"), T0 + 2)
    assert await store.record_attempt(
        Lease("r1", token), FailedAttempt("flaky", 1, "{}", T0, T0 + 9), T0 + 3
    )
    assert await store.fail_run(Lease("r1", token), '{"type": "StepFailed"}', T0 + 4)
    failed = await store.get_run("r1")
    assert failed is not None and failed.error == {"type": "StepFailed"}

    assert await store.retry_run("r1", T0 + 5) == "queued"
    run_row = await store.get_run("r1")
    assert run_row is not None
    assert (run_row.status, run_row.error, run_row.completed_at, run_row.recoveries) == (
        "queued",
        None,
        None,
        0,
    )
    # The kept result, and the retry's mark (the time its cancel_on watches look from).
    assert [(s.key, s.kind, s.output, s.completed_at) for s in run_row.steps] == [
        ("good", "run", "kept", T0 + 1),
        (RETRY_MARK, "cancel", None, T0 + 5),
    ]
    # The lease token moved on: the next claim is not taken for the failed run's execution.
    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 6)
    assert again.lease_token == token + 2
    assert [(h.key, h.completed_at) for h in again.history] == [
        ("good", T0 + 1),
        (RETRY_MARK, T0 + 5),
    ]
    assert await store.cancel_run("r1", T0 + 7) == "cancelled"
    assert await store.retry_run("r1", T0 + 8) == "queued"  # one mark: the latest retry's
    retried = await store.get_run("r1")
    assert retried is not None
    assert [(s.key, s.completed_at) for s in retried.steps if s.kind == "cancel"] == [
        (RETRY_MARK, T0 + 8)
    ]
    with pytest.raises(InvalidRunState):
        await store.retry_run("r1", T0 + 6)
    # A run cancelled before any claim and retried: its first claim reads the mark too.
    await store.start_run(new_run("r2"), T0)
    assert await store.cancel_run("r2", T0 + 1) == "cancelled"
    assert await store.retry_run("r2", T0 + 2) == "queued"
    claimed = {c.id: c for c in await store.claim_runs("w1", 2, LEASE, T0 + 9)}
    assert [h.key for h in claimed["r2"].history] == [RETRY_MARK]
    with pytest.raises(RunNotFound):
        await store.retry_run("missing", T0 + 6)


async def test_purge_finished_deletes_old_runs_in_batches(store: Store) -> None:
    old, newer, alive = await running(store, "old", "newer", "alive")
    assert await store.record_step(Lease("old", old.lease_token), step("a"), T0 + 1)
    assert await store.complete_run(Lease("old", old.lease_token), "1", T0 + 1)
    assert await store.fail_run(Lease("newer", newer.lease_token), "{}", T0 + 2)
    assert await store.purge_finished(T0 + 1, 10) == 0  # strictly before
    assert await store.purge_finished(T0 + 10, 1) == 1
    assert await store.get_run("old") is None and await store.load_history("old") == []
    assert await store.purge_finished(T0 + 10, 10) == 1
    assert await store.purge_finished(T0 + 10, 10) == 0
    assert await status(store, "alive") == "running"


async def test_list_runs_pages_newest_first(store: Store) -> None:
    for i in range(5):
        await store.start_run(new_run(f"r{i}", "even" if i % 2 == 0 else "odd"), T0 + i)
    await store.start_run(new_run("r4b", "even"), T0 + 4)  # same created_at as r4
    pages, before = [], None
    while page := await store.list_runs(None, None, 2, before):
        pages.append([r.id for r in page])
        before = (page[-1].created_at, page[-1].id)
    assert pages == [["r4b", "r4"], ["r3", "r2"], ["r1", "r0"]]
    assert [r.id for r in await store.list_runs("even", None, 10)] == ["r4b", "r4", "r2", "r0"]
    [claimed] = await store.claim_runs("w1", 1, LEASE, T0 + 10)
    assert [r.id for r in await store.list_runs(None, "running", 10)] == [claimed.id]
    assert [r.id for r in await store.list_runs("odd", "queued", 10)] == ["r3", "r1"]
    assert (await store.list_runs(None, None, 1))[0].steps == ()


async def test_heartbeat_renews_only_the_runs_named(store: Store) -> None:
    await running(store, "r1", "r2")
    assert await store.heartbeat("w1", ["r1"], LEASE, T0 + 20) == {"r1"}
    claimed = await store.claim_runs("w2", 5, LEASE, T0 + LEASE + 1)
    assert [(c.id, c.recoveries) for c in claimed] == [("r2", 1)]


async def test_reclaiming_its_own_expired_run_is_not_a_recovery(store: Store) -> None:
    (first,) = await running(store, "r1")
    again = await store.claim_runs("w1", 1, LEASE, T0 + LEASE + 1)
    assert [(c.id, c.recoveries, c.lease_token) for c in again] == [
        ("r1", 0, first.lease_token + 1)
    ]


async def test_run_counts_are_the_queue_depth(store: Store) -> None:
    await running(store, "r1")
    await store.start_run(new_run("r2"), T0)
    await store.start_run(new_run("r3"), T0)
    counts = sorted(await store.run_counts())
    assert [(status, n) for _, status, n in counts] == [("queued", 2), ("running", 1)]


async def test_purge_finished_also_purges_old_events(store: Store) -> None:
    await send(store, "old", "order/created", {}, T0)
    await send(store, "new", "order/created", {}, T0 + 20)
    assert await store.purge_finished(T0 + 10, 10) == 1
    [again] = (await store.send_events([EventIntake(event("old"))], T0 + 30)).results
    assert not again.duplicate  # forgotten: a redelivery this late is new
    [kept] = (await store.send_events([EventIntake(event("new"))], T0 + 30)).results
    assert kept.duplicate


async def test_concurrent_steps_are_recorded_together_each_fenced(store: Store) -> None:
    claimed = await running(store, "r1", "r2", "r3", "r4")
    stale = claimed[2].lease_token - 1  # r3's write comes from a worker that lost its lease
    tokens = [c.lease_token for c in claimed]
    tokens[2] = stale
    writes = [
        store.record_step(Lease(c.id, token), step(key, output=c.id), T0 + 1)
        for c, token in zip(claimed, tokens, strict=True)
        for key in ("a", "b")
    ]
    results = await asyncio.gather(*writes)
    assert results == [True, True, True, True, False, False, True, True]
    for c in claimed:
        history = await store.load_history(c.id)
        expected = [] if c.id == "r3" else [("a", c.id), ("b", c.id)]
        assert [(s.key, s.output) for s in history] == expected


async def test_concurrent_sends_share_a_transaction_and_still_dedupe(store: Store) -> None:
    def intake(event_id: str, run_id: str) -> EventIntake:
        e = event(event_id)
        return EventIntake(e, (NewRun(run_id, "wf", e),))

    sends = [store.send_events([intake(f"e{i % 5}", f"r{i}")], T0) for i in range(20)]
    results = [r for sent in await asyncio.gather(*sends) for r in sent.results]
    by_event: dict[str, set[tuple[str, ...]]] = {}
    for result in results:
        by_event.setdefault(result.event_id, set()).add(result.run_ids)
    assert {e: len(ids) for e, ids in by_event.items()} == {f"e{i}": 1 for i in range(5)}
    assert sum(not r.duplicate for r in results) == 5
    assert len(await store.run_counts()) == 1 and (await store.run_counts())[0][2] == 5


async def test_run_status_reads_the_status_alone(store: Store) -> None:
    assert await store.run_status("missing") is None
    await store.start_run(new_run("r1"), T0)
    assert await store.run_status("r1") == "queued"
    [run] = await store.claim_runs("w1", 1, LEASE, T0)
    assert await store.run_status("r1") == "running" == await status(store, "r1")
    assert await store.complete_run(Lease("r1", run.lease_token), "1", T0 + 1)
    assert await store.run_status("r1") == "completed" == await status(store, "r1")


async def test_concurrent_sending_steps_share_a_transaction_and_a_fenced_one_sends_nothing(
    store: Store,
) -> None:
    runs = await running(store, "r1", "r2", "r3", "r4")
    tokens = {run.id: run.lease_token for run in runs}
    assert isinstance(store, SqlStore)
    before = store.sending_batches

    def sending(run_id: str, token: int) -> Any:
        sent = event(f"sent-{run_id}", "order/shipped")
        intake = EventIntake(sent, (NewRun(f"child-{run_id}", "shipper", sent),))
        return store.record_step(
            Lease(run_id, token), step("send", kind="send", sends=(intake,)), T0
        )

    # r3's lease is stale: its step and its event are refused, the others' go in together.
    recorded = await asyncio.gather(
        *(sending(r, tokens[r] + (99 if r == "r3" else 0)) for r in ("r1", "r2", "r3", "r4"))
    )
    assert recorded == [True, True, False, True]
    assert 1 <= store.sending_batches - before <= 2  # the first alone, the rest together
    for run_id in ("r1", "r2", "r4"):
        assert await status(store, f"child-{run_id}") == "queued"
        assert await store.get_event(f"sent-{run_id}") is not None
    assert await store.get_run("child-r3") is None
    assert await store.get_event("sent-r3") is None
    # Recorded once: the same step again changes nothing and sends nothing more.
    again = await asyncio.gather(*(sending(r, tokens[r]) for r in ("r1", "r2")))
    assert again == [True, True]
    assert len(await store.runs_of_event("sent-r1", 10)) == 1
