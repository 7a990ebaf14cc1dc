"""Concurrency limits and priority as the store enforces them in its claim, on both stores."""

from __future__ import annotations

import asyncio

from dataflows.records import ClaimRequest, EventIntake, FlowLimit, Lease, NewRun
from dataflows.store import Store
from tests.store.builders import LEASE, T0, event, new_run, status


async def limited(store: Store, limit: int, *runs: tuple[str, str], workflow: str = "wf") -> None:
    """Sync ``workflow``'s limit and start runs ``(id, key)``, one second apart."""
    await store.sync_flow_limits([FlowLimit(workflow, limit)], T0)
    for i, (run_id, key) in enumerate(runs):
        await store.start_run(new_run(run_id, workflow, concurrency_key=key), T0 + i)


async def claimed_ids(store: Store, limit: int = 10, now: float = T0 + 100) -> list[str]:
    return [c.id for c in await store.claim_runs("w1", limit, LEASE, now)]


async def test_a_key_runs_at_most_its_limit_and_keys_are_independent(store: Store) -> None:
    await limited(store, 2, ("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b"))
    await store.start_run(new_run("free", "other"), T0 + 9)
    assert sorted(await claimed_ids(store)) == ["a1", "a2", "b1", "b2", "free"]
    assert await claimed_ids(store) == []
    assert await status(store, "a3") == "queued"

    # A slot frees when a run finishes: the next of its key goes.
    assert await store.complete_run(Lease("a1", 1), "1", T0 + 101)
    assert await claimed_ids(store, now=T0 + 102) == ["a3"]


async def test_a_suspended_run_holds_no_slot_and_waits_for_one_when_due(store: Store) -> None:
    await limited(store, 1, ("r1", ""), ("r2", ""))
    assert await claimed_ids(store) == ["r1"]
    assert await store.suspend_run(Lease("r1", 1), T0 + 120, "sleep", T0 + 101)
    assert await claimed_ids(store, now=T0 + 102) == ["r2"]

    # r1's sleep is due while r2 holds the slot: r1 is queued, not claimed, and not due any more.
    assert await claimed_ids(store, now=T0 + 121) == []
    assert await status(store, "r1") == "queued"
    assert await store.next_wake_at() is None
    assert await store.complete_run(Lease("r2", 1), "1", T0 + 122)
    [again] = await store.claim_runs("w1", 10, LEASE, T0 + 123)
    assert (again.id, again.lease_token) == ("r1", 2)


async def test_a_run_cancelled_while_holding_a_slot_frees_it(store: Store) -> None:
    await limited(store, 1, ("r1", "k"), ("r2", "k"))
    assert await claimed_ids(store) == ["r1"]
    await store.cancel_run("r1", T0 + 101)
    assert await claimed_ids(store, now=T0 + 102) == ["r2"]


async def test_queued_runs_start_by_priority_then_age(store: Store) -> None:
    await store.sync_flow_limits([FlowLimit("wf", 1)], T0)
    for i, (run_id, priority) in enumerate([("low", 0), ("high", 10), ("mid", 5), ("high2", 10)]):
        await store.start_run(new_run(run_id, concurrency_key="", priority=priority), T0 + i)
    order = []
    for n in range(4):
        [run] = await store.claim_runs("w1", 10, LEASE, T0 + 100 + n)
        order.append(run.id)
        assert await store.complete_run(run.lease, "1", T0 + 100 + n)
    assert order == ["high", "high2", "mid", "low"]

    # Unlimited runs too start by priority when a worker has fewer slots than runs queued.
    for i, (run_id, priority) in enumerate([("u-low", 0), ("u-high", 3)]):
        await store.start_run(new_run(run_id, "other", priority=priority), T0 + 200 + i)
    assert await claimed_ids(store, 1, T0 + 300) == ["u-high"]


async def test_held_runs_say_why_and_a_free_one_does_not(store: Store) -> None:
    await limited(store, 1, ("r1", "customer 42"), ("r2", "customer 42"))
    await limited(store, 1, ("w1", ""), ("w2", ""), workflow="whole")
    await store.sync_flow_limits([FlowLimit("wf", 1), FlowLimit("whole", 1)], T0)
    queued = await store.get_run("r1")
    assert queued is not None and queued.wait_reason is None  # a slot is free for it
    await claimed_ids(store)
    held = await store.get_run("r2")
    assert held is not None and (held.status, held.wait_reason) == (
        "queued",
        "concurrency wf/customer 42",
    )
    [listed] = [r for r in await store.list_runs("whole", "queued", 10, None)]
    assert (listed.id, listed.wait_reason) == ("w2", "concurrency whole")


async def test_a_limit_changed_or_removed_applies_to_runs_already_queued(store: Store) -> None:
    await limited(store, 1, *[(f"r{i}", "k") for i in range(5)])
    assert await claimed_ids(store) == ["r0"]
    await store.sync_flow_limits([FlowLimit("wf", 3)], T0 + 101)
    assert await store.list_flow_limits() == [FlowLimit("wf", 3)]
    assert await claimed_ids(store, now=T0 + 102) == ["r1", "r2"]
    await store.sync_flow_limits([], T0 + 103)  # the code has no limit any more
    assert await store.list_flow_limits() == []
    assert await claimed_ids(store, now=T0 + 104) == ["r3", "r4"]


async def test_intake_stores_the_key_and_its_eager_claim_respects_the_limit(store: Store) -> None:
    await store.sync_flow_limits([FlowLimit("wf", 1)], T0)
    events = [event(f"e{i}", ts=T0 + i) for i in range(3)]
    intakes = [
        EventIntake(ev, (NewRun(f"r{i}", "wf", ev, concurrency_key="k"),))
        for i, ev in enumerate(events)
    ]
    sent = await store.send_events(intakes, T0, ClaimRequest("w1", 10, LEASE))
    assert [c.id for c in sent.claimed] in ([], ["r0"])  # SQLite does not claim at intake
    assert len(sent.claimed + await store.claim_runs("w1", 10, LEASE, T0 + 1)) == 1


async def test_concurrent_claims_never_exceed_the_limit(store: Store, other: Store) -> None:
    runs = [(f"r{i:02d}", f"k{i % 3}") for i in range(30)]
    await limited(store, 2, *runs)
    claims = [
        (store if i % 2 else other).claim_runs(f"w{i}", 3, LEASE, T0 + 100) for i in range(20)
    ]
    claimed = [c.id for batch in await asyncio.gather(*claims) for c in batch]
    assert len(claimed) == len(set(claimed))
    per_key: dict[str, int] = {}
    for run_id in claimed:
        key = dict(runs)[run_id]
        per_key[key] = per_key.get(key, 0) + 1
    assert all(n <= 2 for n in per_key.values()), per_key
    # Slots skipped by a claim that found a key's lock taken are claimed by the next one.
    claimed += await claimed_ids(store, 100, T0 + 101)
    assert len(claimed) == 6


# -- start timeout ---------------------------------------------------------------------------------


async def test_a_run_not_started_by_its_deadline_is_never_claimed_and_is_cancelled(
    store: Store,
) -> None:
    await limited(store, 1)
    await store.start_run(new_run("held", concurrency_key="", start_timeout=60), T0)
    await store.start_run(new_run("late", "other", start_timeout=60), T0 + 0.5)
    await store.start_run(new_run("started", "other", start_timeout=60), T0 + 0.4)
    assert await claimed_ids(store, 1, T0 + 1) == ["held"]
    assert await claimed_ids(store, 1, T0 + 2) == ["started"]
    assert await store.release_run(Lease("started", 1), T0 + 3)  # started once: no deadline now
    # Past the deadline: runs that started once are claimed (held's lease expired), late is not.
    assert await claimed_ids(store, 10, T0 + 61) == ["held", "started"]
    assert await store.cancel_unstarted(T0 + 61) == ["late"]
    run = await store.get_run("late")
    assert run is not None and run.status == "cancelled"
    assert run.error is not None and run.error["type"] == "StartTimeout"
    assert await store.cancel_unstarted(T0 + 62) == []
    # Retried, it runs: the deadline was for its first start.
    assert await store.retry_run("late", T0 + 63) == "queued"
    assert await claimed_ids(store, 10, T0 + 64) == ["late"]


# -- idempotency -----------------------------------------------------------------------------------


def keyed(event_id: str, now: float, *workflows: str) -> EventIntake:
    ev = event(event_id, ts=now)
    runs = tuple(
        NewRun(f"{event_id}-{w}", w, ev, "order 7", idempotency_window=DAY) for w in workflows
    )
    return EventIntake(ev, runs)


DAY = 24 * 3600.0


async def test_one_run_per_idempotency_key_within_its_window(store: Store) -> None:
    [first] = (await store.send_events([keyed("e1", T0, "wf", "other")], T0)).results
    assert sorted(first.run_ids) == ["e1-other", "e1-wf"] and first.skipped == ()
    # Within the window: no run, and the result says which workflow skipped and why.
    [again] = (await store.send_events([keyed("e2", T0 + 60, "wf")], T0 + 60)).results
    assert (again.run_ids, again.skipped) == ((), (("wf", "idempotency order 7"),))
    assert await store.get_run("e2-wf") is None
    # Two in one batch: the first takes the key.
    sent = await store.send_events([keyed("e3", T0 + DAY, "x"), keyed("e4", T0 + DAY, "x")], T0)
    assert [r.run_ids for r in sent.results] == [("e3-x",), ()]
    # Past the window the key is free again (the old run keeps its data, not the key).
    [later] = (await store.send_events([keyed("e5", T0 + DAY, "wf")], T0 + DAY)).results
    assert later.run_ids == ("e5-wf",)
    # start_run with a window: an old holder gives the key up too.
    run = NewRun("s1", "other", event("s1/trigger"), "order 7", idempotency_window=DAY)
    assert await store.start_run(run, T0 + 10) == ("e1-other", False)
    assert await store.start_run(run, T0 + DAY) == ("s1", True)


# -- rate limit ------------------------------------------------------------------------------------


def rated(event_id: str, now: float, key: str = "shop") -> EventIntake:
    ev = event(event_id, ts=now)
    run = NewRun(f"{event_id}-r", "wf", ev, rate_key=key, rate_limit=2, rate_period=60.0)
    return EventIntake(ev, (run,))


async def test_runs_over_the_rate_limit_are_not_created_and_say_why(store: Store) -> None:
    sent = await store.send_events([rated("e1", T0), rated("e2", T0 + 1)], T0 + 1)
    assert [r.run_ids for r in sent.results] == [("e1-r",), ("e2-r",)]
    [over] = (await store.send_events([rated("e3", T0 + 2)], T0 + 2)).results
    assert (over.run_ids, over.skipped) == ((), (("wf", "rate limit shop: 2 per 60s"),))
    assert await store.get_run("e3-r") is None
    [other] = (await store.send_events([rated("e4", T0 + 2, "other")], T0 + 2)).results
    assert other.run_ids == ("e4-r",)  # another key, its own limit
    # In one batch, the runs created before count.
    batch = [rated(f"e{n}", T0 + 61) for n in (5, 6, 7)]  # the window moved on: 2 again
    sent = await store.send_events(batch, T0 + 61)
    assert [r.run_ids for r in sent.results] == [("e5-r",), ("e6-r",), ()]


async def test_concurrent_intakes_never_pass_the_rate_limit(store: Store, other: Store) -> None:
    sends = [(store if i % 2 else other).send_events([rated(f"e{i}", T0)], T0) for i in range(12)]
    results = [r for sent in await asyncio.gather(*sends) for r in sent.results]
    assert sum(len(r.run_ids) for r in results) == 2
    assert sum(len(r.skipped) for r in results) == 10
