"""Debounces as the store's event intake keeps them, on both stores: one pending run per
workflow and key, given each new event's data and pushed back, claimed when due."""

from __future__ import annotations

import asyncio

from dataflows.records import EventIntake, NewRun
from dataflows.store import Store
from tests.store.builders import T0, event, status


def bounced(
    event_id: str, now: float, key: str = "item", max_wait: float | None = 100.0
) -> EventIntake:
    ev = event(event_id, data={"n": event_id}, ts=now)
    run = NewRun(
        f"{event_id}-d",
        "wf",
        ev,
        debounce_key=key,
        debounce_period=30.0,
        debounce_max_wait=max_wait,
    )
    return EventIntake(ev, (run,))


async def claimed_ids(store: Store, now: float) -> list[str]:
    return [c.id for c in await store.claim_runs("w1", 10, 1000.0, now)]


async def test_a_burst_collapses_into_one_run_started_a_period_after_the_last(
    store: Store,
) -> None:
    [first] = (await store.send_events([bounced("e1", T0)], T0)).results
    assert first.run_ids == ("e1-d",)
    assert await status(store, "e1-d") == "waiting"
    for n, at in ((2, T0 + 10), (3, T0 + 20)):
        [more] = (await store.send_events([bounced(f"e{n}", at)], at)).results
        assert (more.run_ids, more.skipped) == ((), (("wf", "debounced into run e1-d"),))
    [other] = (await store.send_events([bounced("o1", T0 + 20, "other")], T0 + 20)).results
    assert other.run_ids == ("o1-d",)  # another key, its own run
    assert await claimed_ids(store, T0 + 49.9) == []
    runs = {r.id: r for r in await store.claim_runs("w1", 10, 1000.0, T0 + 50)}
    assert sorted(runs) == ["e1-d", "o1-d"]
    assert runs["e1-d"].event.data == {"n": "e3"}
    assert runs["e1-d"].event.id == "e3"
    # Started: the next event starts a new run.
    [again] = (await store.send_events([bounced("e4", T0 + 51)], T0 + 51)).results
    assert again.run_ids == ("e4-d",)


async def test_a_run_is_pushed_back_no_later_than_max_wait(store: Store) -> None:
    for n in range(5):
        at = T0 + 25 * n
        await store.send_events([bounced(f"e{n}", at, max_wait=60.0)], at)
        if at + 25 >= T0 + 60:
            break
    assert await claimed_ids(store, T0 + 59.9) == []
    assert await claimed_ids(store, T0 + 60) == ["e0-d"]


async def test_concurrent_intakes_of_one_key_create_one_run(store: Store, other: Store) -> None:
    sends = [(store if i % 2 else other).send_events([bounced(f"e{i}", T0)], T0) for i in range(12)]
    results = [r for sent in await asyncio.gather(*sends) for r in sent.results]
    assert sum(len(r.run_ids) for r in results) == 1
    assert sum(len(r.skipped) for r in results) == 11
