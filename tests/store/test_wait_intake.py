"""Event intake resolves the waits an event matches, locking per wait key (store level).

Intake records a matching pending wait's step itself (the event as output), deletes the wait
and queues the run, or signals it if it is still running. These tests hold both stores to that,
to the once-per-run rule when two waits of a run match one event, and to the per-name and
per-key locking under concurrency (several stores: several pools, as several processes would
have).
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from dataflows.records import (
    EventIntake,
    IntakeResult,
    Lease,
    StoredEvent,
    WaitMatch,
)
from dataflows.store import Store
from dataflows.store.events import Sending
from dataflows.store.sql_store import SqlStore
from tests.store.builders import (
    LEASE,
    T0,
    event,
    running,
    send,
    status,
    suspended,
    wait_for,
)

T = TypeVar("T")


# -- 1. intake records the wait ----------------------------------------------------------------


async def test_intake_records_the_wait_step_of_a_suspended_run(store: Store) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("approval/decided", (("data.task", 7),))
    await suspended(store, run, "ok", match, T0 + 1)

    await send(store, "e1", "approval/decided", {"task": 7, "by": "ann"}, T0 + 3)

    # Right after intake, before any worker touched the run: the step is recorded, run queued.
    after = await store.get_run("r1")
    assert after is not None
    assert (after.status, after.wake_at) == ("queued", None)
    [ok] = after.steps
    assert (ok.key, ok.kind, ok.status, ok.event_id) == ("ok", "wait", "completed", "e1")
    assert ok.output == {
        "id": "e1",
        "name": "approval/decided",
        "data": {"task": 7, "by": "ann"},
        "ts": T0 + 3,
    }
    assert (ok.started_at, ok.completed_at, ok.wake_at) == (T0 + 1, T0 + 3, None)
    assert await store.next_wake_at() is None  # the wait's deadline is gone with the wait

    # A second matching event finds nothing left to resolve.
    await send(store, "e2", "approval/decided", {"task": 7}, T0 + 4)
    assert [(s.key, s.event_id) for s in await store.load_history("r1")] == [("ok", "e1")]

    # The woken run replays: reaching the wait again returns what intake recorded.
    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 5)
    found = await wait_for(store, again, "ok", match, T0 + 6, wake_at=T0 + 500)
    assert found.state == "resolved"
    assert found.event == StoredEvent("e1", "approval/decided", {"task": 7, "by": "ann"}, T0 + 3)
    assert [(s.key, s.event_id) for s in await store.load_history("r1")] == [("ok", "e1")]


async def test_a_store_unaware_of_a_new_filter_shape_still_resolves_its_waits(
    store: Store, other: Store
) -> None:
    """Intake reads the filter shapes of waits when it takes an event in, so shapes another
    process registered meanwhile count at once: nothing is cached between events."""
    decided = "approval/decided"
    await send(store, "e0", decided, {"task": 1}, T0 + 1)  # no waits yet: `store` knows none
    r1, r2, r3 = await running(other, "r1", "r2", "r3")
    await suspended(other, r1, "ok", WaitMatch(decided, (("data.task", 7),)), T0 + 2)

    await send(store, "e1", decided, {"task": 7}, T0 + 3)  # a shape `store` has not seen
    assert await status(store, "r1") == "queued"

    await suspended(other, r2, "ok", WaitMatch(decided, (("data.task", 8),)), T0 + 4)
    await send(store, "e2", decided, {"task": 8}, T0 + 5)  # the same shape, now known
    assert await status(store, "r2") == "queued"

    # A second shape on the name (two paths): again unseen, again caught.
    both = WaitMatch(decided, (("data.task", 9), ("data.by", "ann")))
    await suspended(other, r3, "ok", both, T0 + 6)
    await send(store, "e3", decided, {"task": 9, "by": "bob"}, T0 + 7)
    assert await status(store, "r3") == "waiting"
    await send(store, "e4", decided, {"task": 9, "by": "ann"}, T0 + 8)
    assert await status(store, "r3") == "queued"
    for run_id, event_id in (("r1", "e1"), ("r2", "e2"), ("r3", "e4")):
        assert [(s.key, s.event_id) for s in await store.load_history(run_id)] == [("ok", event_id)]


async def test_intake_records_the_wait_of_a_run_still_running(store: Store, other: Store) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("approval/decided", (("data.task", 7),))
    assert (await wait_for(store, run, "ok", match, T0 + 1)).state == "pending"
    # Sent from another store (process) between the wait and the suspend.
    await send(other, "e1", "approval/decided", {"task": 7}, T0 + 2)
    mid = await store.get_run("r1")
    assert mid is not None and mid.status == "running"
    assert [(s.key, s.status, s.event_id) for s in mid.steps] == [("ok", "completed", "e1")]
    assert await store.suspend_run(Lease("r1", run.lease_token), None, "event", T0 + 3)
    assert await status(store, "r1") == "queued"


async def test_intake_answers_the_runs_whose_waits_it_resolved(store: Store, other: Store) -> None:
    """Per event, sorted, each run once; a running run counts; a duplicate resolves nothing."""
    decided = "approval/decided"
    r1, r2, r3, r4 = await running(other, "r1", "r2", "r3", "r4")
    seven = WaitMatch(decided, (("data.task", 7),))
    await suspended(other, r2, "ok", seven, T0 + 1)
    await suspended(other, r1, "ok", seven, T0 + 1)
    assert (await wait_for(other, r3, "ok", seven, T0 + 1)).state == "pending"  # still running
    assert (await wait_for(other, r3, "again", seven, T0 + 1)).state == "pending"

    [first] = (
        await store.send_events([EventIntake(event("e1", decided, {"task": 7}))], T0 + 2)
    ).results
    assert first == IntakeResult("e1", (), False, ("r1", "r2", "r3"))

    await suspended(other, r4, "ok", WaitMatch(decided, (("data.task", 8),)), T0 + 3)
    batch = [
        EventIntake(event("e2", decided, {"task": 8})),
        EventIntake(event("e3", decided, {"task": 9})),
        EventIntake(event("e1", decided, {"task": 7})),
    ]
    assert (await store.send_events(batch, T0 + 4)).results == [
        IntakeResult("e2", (), False, ("r4",)),
        IntakeResult("e3", (), False, ()),
        IntakeResult("e1", (), True, ()),
    ]


async def test_intake_inside_a_program_answers_the_runs_it_resumed(store: Store) -> None:
    """Intake as a program runs it inside its own transaction (a step that sends events, a
    child run's finish) answers the same; on PostgreSQL that is two function calls instead of
    one."""
    [r1] = await running(store, "r1")
    await suspended(store, r1, "ok", WaitMatch("tick", (("data.lane", "x"),)), T0 + 1)
    items = [Sending(EventIntake(event("e1", "tick", {"lane": "x"})), T0 + 2)]
    assert isinstance(store, SqlStore)
    [sent] = await SqlStore._intake_batch(store, items)
    assert sent.results == [IntakeResult("e1", (), False, ("r1",))]
    assert await status(store, "r1") == "queued"


# -- 2. two waits of one run, same key ----------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "one-batch"])
async def test_one_event_resolves_only_the_earlier_of_two_equal_waits(
    store: Store, batched: bool
) -> None:
    [run] = await running(store, "r1")
    match = WaitMatch("tick", (("data.lane", "x"),))
    # "b" is registered first: registration order, not key order, decides.
    assert (await wait_for(store, run, "b", match, T0 + 1)).state == "pending"
    assert (await wait_for(store, run, "a", match, T0 + 2)).state == "pending"
    assert await store.suspend_run(Lease("r1", run.lease_token), None, "event", T0 + 3)

    first, second = event("e1", "tick", {"lane": "x"}, T0 + 4), event("e2", "tick", {"lane": "x"})
    if batched:
        # Both in one transaction: each wait gets its own event, oldest first.
        await store.send_events([EventIntake(first), EventIntake(second)], T0 + 4)
        steps = {s.key: (s.status, s.event_id) for s in await store.load_history("r1")}
        assert steps == {"b": ("completed", "e1"), "a": ("completed", "e2")}
        return

    await store.send_events([EventIntake(first)], T0 + 4)
    steps = {s.key: (s.status, s.event_id) for s in await store.load_history("r1")}
    assert steps == {"b": ("completed", "e1"), "a": ("waiting", None)}
    assert await status(store, "r1") == "queued"

    # The replay: "b" returns its recorded event; "a" finds no unconsumed event, so it stays.
    [again] = await store.claim_runs("w1", 1, LEASE, T0 + 5)
    b = await wait_for(store, again, "b", match, T0 + 6)
    assert b.state == "resolved" and b.event is not None and b.event.id == "e1"
    assert (await wait_for(store, again, "a", match, T0 + 6)).state == "pending"
    assert await store.suspend_run(Lease("r1", again.lease_token), None, "event", T0 + 7)
    assert await status(store, "r1") == "waiting"

    await store.send_events([EventIntake(second)], T0 + 8)
    steps = {s.key: (s.status, s.event_id) for s in await store.load_history("r1")}
    assert steps == {"b": ("completed", "e1"), "a": ("completed", "e2")}
    assert await status(store, "r1") == "queued"


# -- 3. filters that do not match ---------------------------------------------------------------


async def test_event_with_another_key_leaves_the_wait_pending(store: Store) -> None:
    [run, bystander] = await running(store, "r1", "r2")
    match = WaitMatch("approval/decided", (("data.task", 7),))
    await suspended(store, run, "ok", match, T0 + 1)
    # Another run waits on the key the event does have, so the event does resolve something.
    await suspended(
        store, bystander, "ok", WaitMatch("approval/decided", (("data.task", 8),)), T0 + 1
    )

    await send(store, "other-key", "approval/decided", {"task": 8}, T0 + 2)
    await send(store, "no-key", "approval/decided", {"job": 7}, T0 + 3)
    await send(store, "as-text", "approval/decided", {"task": "7"}, T0 + 4)
    await send(store, "other-name", "approval/revoked", {"task": 7}, T0 + 5)

    waiting = await store.get_run("r1")
    assert waiting is not None
    assert (waiting.status, waiting.wake_at) == ("waiting", T0 + 500)
    assert [(s.key, s.status, s.event_id) for s in waiting.steps] == [("ok", "waiting", None)]
    assert await store.next_wake_at() == T0 + 500
    woken = await store.get_run("r2")
    assert woken is not None and woken.status == "queued"
    assert [(s.key, s.event_id) for s in woken.steps] == [("ok", "other-key")]
    assert [c.id for c in await store.claim_runs("w1", 5, LEASE, T0 + 6)] == ["r2"]


#: Per run: the value its wait filters on, and the value an event that resolves it carries.
_EQUAL_VALUES: dict[str, tuple[Any, Any]] = {
    "float": (1.0, 1),
    "int": (2, 2.0),
    "nested": (
        {"id": 9, "lines": [{"sku": "a", "qty": 2.5}]},
        {"lines": [{"qty": 2.5, "sku": "a"}], "id": 9.0},
    ),
    "unicode": ("Zoë ☃ 東京", "Zoë ☃ 東京"),
    "list": ([1, "x", None, True], [1.0, "x", None, True]),
}


async def test_intake_finds_waits_on_equal_values_written_differently(store: Store) -> None:
    """1 and 1.0 are one value, at any depth; objects are equal whatever their members' order."""
    runs = await running(store, *_EQUAL_VALUES)
    for run, (waited, _) in zip(runs, _EQUAL_VALUES.values(), strict=True):
        await suspended(store, run, "ok", WaitMatch("tick", (("data.v", waited),)), T0 + 1)
    sent = await store.send_events(
        [EventIntake(event(f"e-{r}", "tick", {"v": v})) for r, (_, v) in _EQUAL_VALUES.items()],
        T0 + 2,
    )
    assert [r.resumed_run_ids for r in sent.results] == [(r,) for r in _EQUAL_VALUES]


async def test_a_filter_path_follows_object_members_only(store: Store) -> None:
    """As the engine's own matching: a path that leads nowhere gives the event no key for that
    filter (a JSON null is a value like any other), and a step into an array finds nothing."""
    by_null = WaitMatch("tick", (("data.a.b", None),))
    by_member_0 = WaitMatch("tick", (("data.items.0", "x"),))
    nulls, zeros = await running(store, "nulls", "zeros")
    await suspended(store, nulls, "ok", by_null, T0 + 1)
    await suspended(store, zeros, "ok", by_member_0, T0 + 1)

    misses: list[dict[str, Any]] = [
        {"a": {}},
        {"a": None},
        {"a": [None]},
        {"items": ["x"]},
        {"items": "x"},
        {"items": [{"0": "x"}]},
    ]
    for n, data in enumerate(misses):
        await send(store, f"miss{n}", "tick", data, T0 + 2 + n)
    assert (await status(store, "nulls"), await status(store, "zeros")) == ("waiting", "waiting")

    await send(store, "null", "tick", {"a": {"b": None}}, T0 + 10)
    await send(store, "member", "tick", {"items": {"0": "x"}}, T0 + 11)
    for run_id, event_id in (("nulls", "null"), ("zeros", "member")):
        assert [(s.key, s.event_id) for s in await store.load_history(run_id)] == [("ok", event_id)]
