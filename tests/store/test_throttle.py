"""Throttles as the store enforces them in its claim, on both stores: at most `limit` runs of a
key first claimed within any period; the others stay queued, oldest first."""

from __future__ import annotations

import asyncio

from dataflows.records import FlowLimit, Lease
from dataflows.store import Store
from tests.store.builders import LEASE, T0, new_run, status

MAX = 2**31 - 1


async def throttled(store: Store, limit: int, period: float, *runs: tuple[str, str]) -> None:
    """Sync workflow wf's throttle and start runs ``(id, key)``, one second apart."""
    await store.sync_flow_limits([FlowLimit("wf", MAX, limit, period)], T0)
    for i, (run_id, key) in enumerate(runs):
        await store.start_run(new_run(run_id, "wf", concurrency_key=key), T0 + i)


async def claimed_ids(store: Store, now: float, limit: int = 10) -> list[str]:
    return [c.id for c in await store.claim_runs("w1", limit, 1000.0, now)]


async def test_a_key_starts_at_most_its_limit_per_window_oldest_first(store: Store) -> None:
    await throttled(store, 2, 60, ("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"))
    await store.start_run(new_run("a4", "wf", concurrency_key="a"), T0 + 9)
    assert sorted(await claimed_ids(store, T0 + 100)) == ["a1", "a2", "b1"]
    # Finished runs still count: the window counts starts, not running runs.
    assert await store.complete_run(Lease("a1", 1), "1", T0 + 101)
    assert await claimed_ids(store, T0 + 159) == []
    assert await status(store, "a3") == "queued"
    assert (await store.get_run("a3")).wait_reason == "throttle wf/a"  # type: ignore[union-attr]
    assert sorted(await claimed_ids(store, T0 + 160.5)) == ["a3", "a4"]
    await store.start_run(new_run("a5", "wf", concurrency_key="a"), T0 + 170)
    assert await claimed_ids(store, T0 + 220) == []
    assert await claimed_ids(store, T0 + 220.6) == ["a5"]


async def test_a_suspended_run_resumes_without_waiting_for_the_window(store: Store) -> None:
    await throttled(store, 1, 3600, ("r1", ""), ("r2", ""))
    assert await claimed_ids(store, T0 + 100) == ["r1"]
    assert await store.suspend_run(Lease("r1", 1), T0 + 120, "sleep", T0 + 101)
    assert await claimed_ids(store, T0 + 121) == ["r1"]
    assert await status(store, "r2") == "queued"


async def test_with_concurrency_a_resumed_run_takes_a_free_slot_before_throttled_ones(
    store: Store,
) -> None:
    await store.sync_flow_limits([FlowLimit("wf", 1, 1, 3600)], T0)
    await store.start_run(new_run("r1", "wf", concurrency_key=""), T0)
    assert await claimed_ids(store, T0 + 100) == ["r1"]
    await store.start_run(new_run("r2", "wf", concurrency_key=""), T0 - 1)  # older than r1
    assert await store.suspend_run(Lease("r1", 1), T0 + 120, "sleep", T0 + 101)
    # r2 comes first in the queue, but the throttle holds it; r1 resumes in the free slot.
    assert await claimed_ids(store, T0 + 121) == ["r1"]
    assert await claimed_ids(store, T0 + 122) == []  # the slot is taken again
    assert await status(store, "r2") == "queued"


async def test_a_changed_or_removed_throttle_applies_to_queued_runs(store: Store) -> None:
    await throttled(store, 1, 60, ("r1", ""), ("r2", ""), ("r3", ""))
    assert await claimed_ids(store, T0 + 100) == ["r1"]
    await store.sync_flow_limits([FlowLimit("wf", MAX, 2, 60)], T0 + 101)
    assert await store.list_flow_limits() == [FlowLimit("wf", MAX, 2, 60)]
    assert await claimed_ids(store, T0 + 102) == ["r2"]
    await store.sync_flow_limits([], T0 + 103)
    assert await claimed_ids(store, T0 + 104) == ["r3"]


async def test_concurrent_claims_never_pass_the_throttle(store: Store, other: Store) -> None:
    runs = [(f"r{i:02d}", f"k{i % 3}") for i in range(30)]
    await throttled(store, 2, 60, *runs)
    claims = [
        (store if i % 2 else other).claim_runs(f"w{i}", 3, LEASE, T0 + 100) for i in range(20)
    ]
    claimed = [c.id for batch in await asyncio.gather(*claims) for c in batch]
    claimed += await claimed_ids(store, T0 + 101, 100)
    assert len(claimed) == len(set(claimed)) == 6
    per_key: dict[str, int] = {}
    for run_id in claimed:
        per_key[dict(runs)[run_id]] = per_key.get(dict(runs)[run_id], 0) + 1
    assert per_key == {"k0": 2, "k1": 2, "k2": 2}
