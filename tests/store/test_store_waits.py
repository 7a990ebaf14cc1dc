"""The Store's sleeps and event waits, run on SQLite and PostgreSQL alike: deadlines recorded
once, events found whenever they arrived, each consumed once, a finished child waking its parent.
"""

from __future__ import annotations

from dataflows.records import RUN_FINISHED_EVENT, EventIntake, Lease, NewRun, NewWait, WaitMatch
from dataflows.store import Store
from tests.store.builders import LEASE, T0, event, new_run, running, send, status, wait_for

# -- waits -----------------------------------------------------------------------------------------


async def test_sleep_deadline_is_recorded_once(store: Store) -> None:
    [run] = await running(store, "r1")
    token = run.lease_token
    first = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 100, None, T0, ""), T0 + 1
    )
    assert (first.state, first.wake_at) == ("pending", T0 + 100)
    later = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 200, None, T0, ""), T0 + 2
    )
    assert (later.state, later.wake_at) == ("pending", T0 + 100)
    early = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 200, None, T0, ""), T0 + 99
    )
    assert early.state == "pending"
    done = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 200, None, T0, ""), T0 + 100
    )
    assert done.state == "resolved"
    # Reached again (a retry whose first answer was lost): resolved, nothing new recorded.
    again = await store.begin_wait(
        Lease("r1", token), NewWait("nap", "sleep", T0 + 500, None, T0, ""), T0 + 1
    )
    assert (again.state, again.event) == ("resolved", None)
    [row] = await store.load_history("r1")
    assert (row.status, row.completed_at) == ("completed", T0 + 100)


async def test_timed_out_wait_resolves_without_event(store: Store) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("approval/decided")
    pending = await wait_for(store, run, "ok", match, T0 + 5, wake_at=T0 + 10)
    assert (pending.state, pending.wake_at) == ("pending", T0 + 10)
    timed_out = await wait_for(store, run, "ok", match, T0 + 10, wake_at=T0 + 10)
    assert (timed_out.state, timed_out.event) == ("resolved", None)
    [row] = await store.load_history("r1")
    assert (row.status, row.output, row.event_id) == ("completed", None, None)


async def test_event_sent_before_the_wait_is_found(store: Store) -> None:
    [run] = await running(store, "r1")
    await send(store, "e1", "approval/decided", {"task": 7, "ok": True}, T0 + 1)
    found = await wait_for(store, run, "ok", WaitMatch("approval/decided"), T0 + 2)
    assert found.state == "resolved" and found.event is not None
    assert (found.event.id, found.event.data, found.event.ts) == (
        "e1",
        {"task": 7, "ok": True},
        T0 + 1,
    )
    [row] = await store.load_history("r1")
    assert row.event_id == "e1"
    assert row.output == {
        "id": "e1",
        "name": "approval/decided",
        "data": {"task": 7, "ok": True},
        "ts": T0 + 1,
    }
    # Reached again (a retry): the recorded event, not the next one.
    await send(store, "e2", "approval/decided", {"task": 8}, T0 + 3)
    again = await wait_for(store, run, "ok", WaitMatch("approval/decided"), T0 + 4)
    assert again.event == found.event
    assert len(await store.load_history("r1")) == 1


async def test_event_sent_before_the_run_was_created_is_not_matched(store: Store) -> None:
    await send(store, "early", "approval/decided", {}, T0 - 1)
    [run] = await running(store, "r1")
    assert (await wait_for(store, run, "ok", WaitMatch("approval/decided"), T0 + 1)).state == (
        "pending"
    )


async def test_the_runs_own_trigger_event_is_not_matched(store: Store) -> None:
    trigger = event("t1", "order/created", {"id": 1})
    await store.send_events([EventIntake(trigger, (NewRun("r1", "wf", trigger),))], T0)
    [run] = await store.claim_runs("w1", 1, LEASE, T0)
    assert (await wait_for(store, run, "next", WaitMatch("order/created"), T0)).state == "pending"


async def test_each_event_is_consumed_once_per_run_oldest_first(store: Store) -> None:
    [run, other_run] = await running(store, "r1", "r2")
    await send(store, "e1", "tick", {}, T0 + 1)
    await send(store, "e2", "tick", {}, T0 + 2)
    first = await wait_for(store, run, "a", WaitMatch("tick"), T0 + 3)
    second = await wait_for(store, run, "b", WaitMatch("tick"), T0 + 3)
    third = await wait_for(store, run, "c", WaitMatch("tick"), T0 + 3)
    assert first.event is not None and first.event.id == "e1"
    assert second.event is not None and second.event.id == "e2"
    assert third.state == "pending"
    # Another run consumes independently.
    elsewhere = await wait_for(store, other_run, "a", WaitMatch("tick"), T0 + 3)
    assert elsewhere.event is not None and elsewhere.event.id == "e1"


async def test_wait_filters_on_data_paths(store: Store) -> None:
    [run] = await running(store, "r1")
    await send(store, "missing", "order/paid", {"other": 1}, T0 + 1)
    await send(store, "wrong", "order/paid", {"order": {"id": 8}, "tag": "x"}, T0 + 2)
    await send(store, "list", "order/paid", {"order": {"id": 7}, "tag": ["x"]}, T0 + 3)
    await send(store, "right", "order/paid", {"order": {"id": 7}, "tag": "x"}, T0 + 4)
    await send(store, "other-name", "order/refunded", {"order": {"id": 7}, "tag": "x"}, T0 + 5)
    match = WaitMatch("order/paid", (("data.order.id", 7), ("data.tag", "x")))
    found = await wait_for(store, run, "paid", match, T0 + 6)
    assert found.event is not None and found.event.id == "right"
    # Structured filter values match exactly, not by containment.
    listed = WaitMatch("order/paid", (("data.tag", ["x"]),))
    found = await wait_for(store, run, "listed", listed, T0 + 6)
    assert found.event is not None and found.event.id == "list"


async def test_event_during_a_pending_wait_requeues_the_suspending_run(store: Store) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("approval/decided", (("data.task", 7),))
    assert (await wait_for(store, run, "ok", match, T0 + 1)).state == "pending"
    await send(store, "e1", "approval/decided", {"task": 7}, T0 + 2)  # run still running
    assert await status(store, "r1") == "running"
    assert await store.suspend_run(Lease("r1", run.lease_token), None, "event", T0 + 3)
    after = await store.get_run("r1")
    assert after is not None and (after.status, after.wake_at) == ("queued", None)

    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 4)
    assert (again.lease_token, again.recoveries) == (run.lease_token + 1, 0)
    found = await wait_for(store, again, "ok", match, T0 + 5)
    assert found.event is not None and found.event.id == "e1"


async def test_matching_event_wakes_a_waiting_run(store: Store) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("approval/decided", (("data.task", 7),))
    assert (await wait_for(store, run, "ok", match, T0 + 1, wake_at=T0 + 500)).state == "pending"
    assert await store.suspend_run(Lease("r1", run.lease_token), T0 + 500, "event", T0 + 2)
    waiting = await store.get_run("r1")
    assert waiting is not None
    assert (waiting.status, waiting.wake_at, waiting.wait_reason) == ("waiting", T0 + 500, "event")
    assert await store.next_wake_at() == T0 + 500
    assert await store.claim_runs("w1", 1, LEASE, T0 + 3) == []

    await send(store, "no", "approval/decided", {"task": 8}, T0 + 4)
    assert await status(store, "r1") == "waiting"
    await send(store, "yes", "approval/decided", {"task": 7}, T0 + 5)
    assert await status(store, "r1") == "queued"
    assert await store.next_wake_at() is None
    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 6)
    found = await wait_for(store, again, "ok", match, T0 + 7, wake_at=T0 + 500)
    assert found.event is not None and found.event.id == "yes"


async def test_sleeping_run_is_claimable_at_its_wake_time(store: Store) -> None:
    [run] = await running(store, "r1")
    assert await store.suspend_run(Lease("r1", run.lease_token), T0 + 10, "sleep", T0 + 1)
    assert await store.claim_runs("w1", 1, LEASE, T0 + 9.999) == []
    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 10)
    assert (again.id, again.recoveries) == ("r1", 0)
    assert await status(store, "r1") == "running"


async def test_finished_child_wakes_its_waiting_parent(store: Store) -> None:
    [parent] = await running(store, "p")
    await store.start_run(new_run("c", "child", parent_run_id="p", parent_step_key="call"), T0)
    match = WaitMatch(RUN_FINISHED_EVENT, (("data.run_id", "c"),))
    call = await store.begin_wait(
        Lease("p", parent.lease_token),
        NewWait("call", "invoke", None, match, T0, parent.event.id),
        T0 + 1,
    )
    assert call.state == "pending"
    assert await store.suspend_run(Lease("p", parent.lease_token), None, "invoke", T0 + 1)
    [child] = await store.claim_runs("w1", 5, LEASE, T0 + 2)
    assert (child.id, child.parent_run_id) == ("c", "p")
    assert await store.complete_run(Lease("c", child.lease_token), '{"n": 3}', T0 + 3)
    assert await status(store, "p") == "queued"

    [parent] = await store.claim_runs("w1", 5, LEASE, T0 + 4)
    done = await store.begin_wait(
        Lease("p", parent.lease_token),
        NewWait("call", "invoke", None, match, T0, parent.event.id),
        T0 + 5,
    )
    assert done.event is not None
    assert done.event.data["status"] == "completed" and done.event.data["result"] == {"n": 3}
