"""Event intake resolves the waits an event matches, locking per wait key (store level).

Intake records a matching pending wait's step itself (the event as output), deletes the wait
and queues the run, or signals it if it is still running. These tests hold both stores to that,
to the once-per-run rule when two waits of a run match one event, and to the per-name and
per-key locking under concurrency (several stores: several pools, as several processes would
have).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from dataflows.records import (
    ClaimedRun,
    ClaimRequest,
    EventIntake,
    IntakeResult,
    Lease,
    NewEvent,
    NewWait,
    StoredEvent,
    WaitMatch,
)
from dataflows.store import Store
from dataflows.store.events import Sending
from dataflows.store.sql_store import SqlStore
from tests.pg import DbTarget
from tests.store.conftest import new_store
from tests.store.test_store_contract import (
    LEASE,
    T0,
    event,
    new_run,
    running,
    send,
    status,
    wait_for,
)

T = TypeVar("T")


async def suspended(store: Store, run: ClaimedRun, key: str, match: WaitMatch, now: float) -> None:
    """The engine's order: reach the wait (pending), then suspend the run on it."""
    outcome = await wait_for(store, run, key, match, now, wake_at=T0 + 500)
    assert outcome.state == "pending"
    assert await store.suspend_run(Lease(run.id, run.lease_token), outcome.wake_at, "event", now)
    row = await store.get_run(run.id)
    assert row is not None and row.status == "waiting"


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


# -- 4. concurrency: many stores, waits and intake racing ----------------------------------------


@pytest.fixture
async def pg_stores(pg_url: DbTarget) -> AsyncIterator[list[Store]]:
    """Three stores (three pools: three processes, as far as locks go) on one schema."""
    stores = [new_store(pg_url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


@dataclass
class _Plan:
    run_id: str
    group: int
    matches: list[WaitMatch]
    store: Store
    outcomes: list[Any] = field(default_factory=list)


def _ping(group: int, n: int) -> dict[str, Any]:
    return {"k": group, "a": {"b": group}, "tag": f"t{group % 3}", f"s{group}": 1, "n": n}


def _matches(i: int, group: int) -> list[WaitMatch]:
    by_k = WaitMatch("ping", (("data.k", group),))
    by_ab = WaitMatch("ping", (("data.a.b", group),))
    by_k_tag = WaitMatch("ping", (("data.k", group), ("data.tag", f"t{group % 3}")))
    anything = WaitMatch("ping")
    own_shape = WaitMatch("ping", ((f"data.s{group}", 1),))  # a shape new to intake, per group
    return [
        [by_k],
        [own_shape],
        [by_ab],
        [by_k_tag],
        [anything],
        [by_k, by_k],  # two waits with one key: each takes its own event
        [by_k, by_ab],  # two waits, two shapes, the same events
        [by_ab],
    ][i % 8]


async def test_concurrent_waits_and_intake_resolve_every_wait_once(
    pg_stores: list[Store],
) -> None:
    rng = random.Random(20261125)
    groups = 40
    clock = itertools.count()

    def now() -> float:
        return T0 + 1 + next(clock) * 0.001

    creator = pg_stores[0]
    plans = []
    for i in range(200):
        group = rng.randrange(groups)
        plans.append(_Plan(f"r{i:03d}", group, _matches(i, group), pg_stores[i % 3]))
        await creator.start_run(new_run(f"r{i:03d}"), T0)
    claimed = {c.id: c for c in await creator.claim_runs("w", 500, 600.0, T0)}
    assert len(claimed) == len(plans)

    async def drive(plan: _Plan) -> None:
        run = claimed[plan.run_id]
        for n, match in enumerate(plan.matches):
            plan.outcomes.append(
                await plan.store.begin_wait(
                    Lease(run.id, run.lease_token),
                    NewWait(f"w{n}", "wait", None, match, run.created_at, run.event.id),
                    now(),
                )
            )
        if all(o.state == "resolved" for o in plan.outcomes):
            assert await plan.store.complete_run(Lease(run.id, run.lease_token), "1", now())
        else:
            assert all(o.state in ("resolved", "pending") for o in plan.outcomes)
            assert await plan.store.suspend_run(
                Lease(run.id, run.lease_token), None, "event", now()
            )

    # Exactly as many events per group as its busiest run has waits: an event missed by a wait
    # is not made up for by a later one (filterless waits aside: they match every event).
    per_group = {
        g: max([len(p.matches) for p in plans if p.group == g], default=1) for g in range(groups)
    }
    events = [
        event(f"e{g}-{n}", "ping", _ping(g, n), T0 + 1)
        for g in range(groups)
        for n in range(per_group[g])
    ]
    resends = rng.sample(events, 10)  # duplicates, which must resolve nothing
    shuffled = rng.sample(events + resends, len(events) + len(resends))
    sent: list[list[IntakeResult]] = []

    async def deliver(batch: list[NewEvent], via: Store) -> None:
        sent.append((await via.send_events([EventIntake(e) for e in batch], now())).results)

    # A few events before any wait, so some waits find theirs when reached whatever the timing
    # of the race below (where a burst of new shapes makes intakes queue behind the waits).
    early, shuffled = shuffled[:10], shuffled[10:]
    for e in early:
        await deliver([e], rng.choice(pg_stores))
    work = [drive(plan) for plan in plans]
    while shuffled:
        size = rng.choice([1, 1, 1, 2, 3, 5])  # singles go through the group-commit batcher
        batch, shuffled = shuffled[:size], shuffled[size:]
        if len({e.id for e in batch}) == len(batch):
            work.append(deliver(batch, rng.choice(pg_stores)))
        else:
            work.extend(deliver([e], rng.choice(pg_stores)) for e in batch)
    rng.shuffle(work)
    await asyncio.wait_for(asyncio.gather(*work), 60)

    # Every event stored once; every resend a duplicate.
    results = [r for batch in sent for r in batch]
    assert sorted(r.event_id for r in results if not r.duplicate) == sorted(e.id for e in events)

    by_path = {"begin_wait": 0, "intake": 0}
    for plan in plans:
        row = await creator.get_run(plan.run_id)
        assert row is not None
        steps = {s.key: s for s in row.steps}
        assert sorted(steps) == [f"w{n}" for n in range(len(plan.matches))], plan
        consumed = [s.event_id for s in steps.values()]
        assert None not in consumed and len(set(consumed)) == len(consumed), (plan, consumed)
        for n, (match, outcome) in enumerate(zip(plan.matches, plan.outcomes, strict=True)):
            s = steps[f"w{n}"]
            assert (s.status, s.kind) == ("completed", "wait"), (plan, s)
            assert s.output["id"] == s.event_id and match.matches("ping", s.output["data"])
            if outcome.state == "resolved":
                # Resolved by the wait itself, and the event it returned is the one recorded.
                assert outcome.event is not None and outcome.event.id == s.event_id, (plan, s)
                by_path["begin_wait"] += 1
            else:
                by_path["intake"] += 1
        resolved_at_once = all(o.state == "resolved" for o in plan.outcomes)
        assert row.status == ("completed" if resolved_at_once else "queued"), (plan, row.status)
    assert by_path["begin_wait"] > 0 and by_path["intake"] > 0, by_path

    # The woken runs replay: each wait returns what was recorded, nothing new is consumed.
    woken = await creator.claim_runs("w2", 500, LEASE, T0 + 100)
    for run in woken:
        plan = next(p for p in plans if p.run_id == run.id)
        history = {s.key: s.event_id for s in await creator.load_history(run.id)}
        for n, match in enumerate(plan.matches):
            outcome = await wait_for(creator, run, f"w{n}", match, T0 + 101)
            assert outcome.state == "resolved" and outcome.event is not None
            assert outcome.event.id == history[f"w{n}"]
        assert {s.key: s.event_id for s in await creator.load_history(run.id)} == history


async def _after_round_trips(store: Store, trips: int, work: Awaitable[T]) -> T:
    for _ in range(trips):
        await store.next_wake_at()  # one statement, one round trip
    return await work


@pytest.mark.parametrize("shape", ["new", "known"])
async def test_a_wait_and_its_event_racing_never_miss_each_other(
    store: Store, other: Store, shape: str
) -> None:
    """Each round, a wait and its event start together from two stores (two processes).

    ``new``: every wait brings a filter shape intake has not seen (it registers it under the
    name's lock); ``known``: the shape is registered, every round a new key (the key's lock).
    """
    rounds = 100
    run_ids = [f"r{i:02d}" for i in range(rounds)]
    for run_id in run_ids:
        await store.start_run(new_run(run_id), T0)
    claimed = {c.id: c for c in await store.claim_runs("w", rounds, 600.0, T0)}
    paths = {"begin_wait": 0, "intake": 0}
    for i, run_id in enumerate(run_ids):
        run = claimed[run_id]
        path = f"data.p{i}" if shape == "new" else "data.p"
        match = WaitMatch("race", ((path, i),))
        # A few round trips before one side starts shift where the two transactions overlap.
        lead = i % 9 - 4
        waiting = _after_round_trips(
            store, max(lead, 0), wait_for(store, run, "w", match, T0 + 1 + i)
        )
        data = {f"p{i}" if shape == "new" else "p": i}
        sending = _after_round_trips(
            other, max(-lead, 0), send(other, f"e{i}", "race", data, T0 + 1 + i)
        )
        if i % 2:
            outcome, _ = await asyncio.gather(waiting, sending)
        else:
            _, outcome = await asyncio.gather(sending, waiting)
        if outcome.state == "resolved":
            paths["begin_wait"] += 1
            assert outcome.event is not None and outcome.event.id == f"e{i}"
            continue
        paths["intake"] += 1
        assert outcome.state == "pending"
        # The event was stored after the wait: intake must have recorded it.
        assert await store.suspend_run(Lease(run_id, run.lease_token), None, "event", T0 + 1 + i)
        row = await store.get_run(run_id)
        assert row is not None
        assert [(s.key, s.status, s.event_id) for s in row.steps] == [("w", "completed", f"e{i}")]
        assert row.status == "queued", (i, paths)
    assert paths["begin_wait"] > 0 and paths["intake"] > 0, paths  # both orders were raced


# -- more of the same rules, where they are easy to break ---------------------------------------


@pytest.mark.parametrize("how", ["batches", "lone-events"])
async def test_intakes_waking_the_same_runs_in_opposite_orders_do_not_deadlock(
    pg_stores: list[Store], how: str
) -> None:
    """Runs x and y each have two pending waits on one event name (a workflow gathering two
    waits); two intakes on disjoint keys (so they do not serialise on advisory locks) each
    resolve one wait of x and one of y, in opposite orders.

    ``batches``: batch one resolves x's wait, then y's; batch two y's, then x's (the group
    commit batcher forms such batches from concurrent single sends too). ``lone-events``: one
    event each, matching both filter shapes (data.a, data.b); intake resolves by shape, in the
    same shape order for both events, and x and y use the shapes the other way round.
    """
    first, second = pg_stores[0], pg_stores[1]
    pairs = 30
    for j in range(pairs):
        await first.start_run(new_run(f"x{j:02d}"), T0)
        await first.start_run(new_run(f"y{j:02d}"), T0)
    claimed = {c.id: c for c in await first.claim_runs("w", 2 * pairs, 600.0, T0)}

    def ping(event_id: str, **data: int) -> EventIntake:
        return EventIntake(event(event_id, "ping", data, T0 + 2))

    # Per pair: each run's two waits as (path, value), and the two intakes (one per store).
    plans: list[tuple[dict[str, list[tuple[str, int]]], list[EventIntake], list[EventIntake]]]
    plans = []
    for j in range(pairs):
        k = 4 * j
        if how == "batches":
            waits = {
                f"x{j:02d}": [("data.k", k), ("data.k", k + 3)],
                f"y{j:02d}": [("data.k", k + 1), ("data.k", k + 2)],
            }
            one = [ping(f"e{k}", k=k), ping(f"e{k + 1}", k=k + 1)]  # x, then y
            two = [ping(f"e{k + 2}", k=k + 2), ping(f"e{k + 3}", k=k + 3)]  # y, then x
        else:
            waits = {
                f"x{j:02d}": [("data.a", k), ("data.b", k + 3)],
                f"y{j:02d}": [("data.b", k + 1), ("data.a", k + 2)],
            }
            one = [ping(f"e{k}", a=k, b=k + 1)]  # x by data.a, y by data.b
            two = [ping(f"e{k + 2}", a=k + 2, b=k + 3)]  # y by data.a, x by data.b
        plans.append((waits, one, two))

    for waits, _, _ in plans:
        for run_id, filters in waits.items():
            run = claimed[run_id]
            for n, (path, value) in enumerate(filters):
                match = WaitMatch("ping", ((path, value),))
                assert (await wait_for(first, run, f"w{n}", match, T0 + 1)).state == "pending"
            assert await first.suspend_run(Lease(run_id, run.lease_token), None, "event", T0 + 1)

    if how == "batches":
        sends = [
            s.send_events(b, T0 + 2)
            for _, one, two in plans
            for s, b in ((first, one), (second, two))
        ]
        await asyncio.wait_for(asyncio.gather(*sends), 30)
    else:
        for _, one, two in plans:  # pair by pair: each send its own transaction
            await asyncio.wait_for(
                asyncio.gather(first.send_events(one, T0 + 2), second.send_events(two, T0 + 2)), 30
            )

    for run_id in claimed:
        row = await first.get_run(run_id)
        assert row is not None and row.status == "queued"
        assert [s.status for s in row.steps] == ["completed", "completed"]


@pytest.mark.parametrize("first", ["filtered", "filterless"])
async def test_an_event_matching_two_waits_of_a_run_goes_to_the_earlier_one(
    store: Store, first: str
) -> None:
    """Two pending waits of one run on one event name, with different filter shapes.

    As with two waits of one key, the wait registered first should take the event: the other
    gets the next matching one. (Before intake resolved waits, the replay reached them in that
    order.) Another run registered a filterless wait earlier, so both shapes are old news.
    """
    [early, run] = await running(store, "r0", "r1")
    anything, only_k1 = WaitMatch("ping"), WaitMatch("ping", (("data.k", 1),))
    await suspended(store, early, "any", anything, T0 + 1)
    order = [("k1", only_k1), ("any", anything)]
    if first == "filterless":
        order.reverse()
    (earlier, _), (later, _) = order
    for i, (key, match) in enumerate(order):
        assert (await wait_for(store, run, key, match, T0 + 2 + i)).state == "pending"
    assert await store.suspend_run(Lease("r1", run.lease_token), None, "event", T0 + 4)

    await send(store, "e1", "ping", {"k": 1}, T0 + 5)
    steps = {s.key: (s.status, s.event_id) for s in await store.load_history("r1")}
    assert steps == {earlier: ("completed", "e1"), later: ("waiting", None)}

    # The next event matches what is left: k1 only if "k1" still waits.
    await send(store, "e2", "ping", {"k": 1 if later == "k1" else 2}, T0 + 6)
    steps = {s.key: (s.status, s.event_id) for s in await store.load_history("r1")}
    assert steps == {earlier: ("completed", "e1"), later: ("completed", "e2")}


# -- eager dispatch: PostgreSQL intake claims for a worker of the sending process ---------------


async def test_intake_claims_the_runs_it_wakes_for_a_local_worker(pg_url: DbTarget) -> None:
    store = new_store(pg_url)
    await store.open()
    try:
        match = WaitMatch("approval/decided", (("data.task", 7),))
        r1, r2 = await running(store, "r1", "r2")
        await suspended(store, r1, "ok", match, T0 + 1)
        await suspended(store, r2, "ok", WaitMatch("approval/decided", (("data.task", 8),)), T0 + 1)
        woken = {"eager-worker": 0, "other": 0}
        store.add_listener(
            lambda: woken.update({"eager-worker": woken["eager-worker"] + 1}),
            worker_id="eager-worker",
        )
        store.add_listener(lambda: woken.update({"other": woken["other"] + 1}))
        claim = ClaimRequest("eager-worker", 3, LEASE)

        one = [EventIntake(event("e1", "approval/decided", {"task": 7}))]
        sent = await store.send_events(one, T0 + 3, claim)
        assert sent.results == [IntakeResult("e1", (), False, ("r1",))]
        # Claimed in the intake's own transaction: leased to the worker, history included.
        [run] = sent.claimed
        assert (run.id, run.lease_token) == ("r1", r1.lease_token + 1)
        assert [(h.key, h.status, h.event_id) for h in run.history] == [("ok", "completed", "e1")]
        row = await store.get_run("r1")
        assert row is not None and row.status == "running"
        assert woken == {"eager-worker": 0, "other": 1}  # its claim loop would find nothing more

        # No claim (a worker with no free slot): the run is queued for whoever claims next.
        two = [EventIntake(event("e2", "approval/decided", {"task": 8}))]
        assert (await store.send_events(two, T0 + 4)).claimed == []
        assert woken == {"eager-worker": 1, "other": 2}
        assert await status(store, "r2") == "queued"
    finally:
        await store.close()


async def test_concurrent_intakes_share_their_claim_by_the_slots_each_held(
    pg_url: DbTarget,
) -> None:
    store = new_store(pg_url)
    await store.open()
    try:
        runs = await running(store, "r1", "r2", "r3")
        for n, run in enumerate(runs):
            await suspended(store, run, "ok", WaitMatch("go", (("data.n", n),)), T0 + 1)
        sends = [
            store.send_events([EventIntake(event(f"e{n}", "go", {"n": n}))], T0 + 2, claim)
            for n, claim in enumerate(
                [ClaimRequest("w", 1, LEASE), None, ClaimRequest("w", 2, LEASE)]
            )
        ]
        first, second, third = await asyncio.gather(*sends)
        assert (len(first.claimed), len(second.claimed)) == (1, 0)
        claimed = [run.id for sent in (first, second, third) for run in sent.claimed]
        assert sorted(claimed) == sorted(set(claimed)) and len(claimed) <= 3
    finally:
        await store.close()
