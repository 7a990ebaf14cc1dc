"""Waits and event intake racing: many stores (several pools, as several processes would have)
waiting and sending at once resolve every wait exactly once, a wait and its event never miss
each other, intakes waking the same runs in opposite orders do not deadlock, and PostgreSQL
intake claims the runs it wakes for a worker of the sending process.
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
    ClaimRequest,
    EventIntake,
    IntakeResult,
    Lease,
    NewEvent,
    NewWait,
    WaitMatch,
)
from dataflows.store import Store
from tests.pg import DbTarget
from tests.store.builders import (
    LEASE,
    T0,
    event,
    new_run,
    running,
    send,
    status,
    suspended,
    wait_for,
)
from tests.store.conftest import new_store

T = TypeVar("T")


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
