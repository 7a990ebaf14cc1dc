"""Group commit of ``app.start``: concurrent starts share one transaction (one multi-row insert),
each caller answered once its run is committed, idempotency keys kept inside a batch and across."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dataflows as df
from dataflows.errors import StoreUnavailable
from dataflows.store.sql_store import SqlStore
from tests.engine.conftest import MakeApp, ManualClock, worker


def _store(app: df.Dataflows) -> SqlStore:
    store = app.store
    assert isinstance(store, SqlStore)
    return store


async def test_concurrent_starts_share_transactions_and_all_run(app: df.Dataflows) -> None:
    done: list[int] = []

    @app.workflow("job")
    async def job(event: df.Event, step: df.Step) -> int:
        n: int = event.data["n"]
        done.append(n)
        return n

    await app.open()
    store = _store(app)
    before = store.start_batches

    async def start_and_read(n: int) -> str:
        run_id = await app.start("job", {"n": n})
        # Committed before the call returned: readable at once, by another connection too.
        run = await app.get_run(run_id)
        assert run.status in ("queued", "running", "completed")
        assert run.event.data == {"n": n}
        return run_id

    ids = await asyncio.gather(*(start_and_read(n) for n in range(200)))
    assert len(set(ids)) == 200
    batches = store.start_batches - before
    assert 1 <= batches < 200, f"{batches} transactions for 200 starts"
    assert len(await app.list_runs(workflow_id="job", limit=500)) == 200
    async with worker(app, concurrency=16):
        for run_id in ids:
            assert (await app.wait_for_run(run_id, timeout=30)).status == "completed"
    assert sorted(done) == list(range(200))


async def test_idempotency_key_inside_one_batch_and_across(app: df.Dataflows) -> None:
    @app.workflow("once")
    async def once(event: df.Event, step: df.Step) -> Any:
        return event.data["n"]

    await app.open()
    store = _store(app)
    # The first call is written alone; the others arrive meanwhile and share the next batch,
    # where "k" and "j" are each repeated.
    keys = ["a"] + ["k", "j", "k", "fresh", "j", "k", "a"]
    before = store.start_batches
    ids = await asyncio.gather(
        *(app.start("once", {"n": n}, idempotency_key=key) for n, key in enumerate(keys))
    )
    assert store.start_batches - before == 2
    by_key: dict[str, set[str]] = {}
    for key, run_id in zip(keys, ids, strict=True):
        by_key.setdefault(key, set()).add(run_id)
    assert all(len(found) == 1 for found in by_key.values()), by_key
    assert len({next(iter(found)) for found in by_key.values()}) == 4
    runs = await app.list_runs(workflow_id="once")
    assert len(runs) == 4
    # The first caller of a key in the batch got the run: its payload is the run's.
    assert (await app.get_run(ids[1])).event.data == {"n": 1}
    assert (await app.get_run(ids[2])).event.data == {"n": 2}
    # Across batches: a later call with a used key creates nothing.
    again = await asyncio.gather(*(app.start("once", {"n": 99}, idempotency_key=k) for k in keys))
    assert again == ids
    assert len(await app.list_runs(workflow_id="once")) == 4
    async with worker(app):
        for run_id in set(ids):
            assert (await app.wait_for_run(run_id, timeout=10)).status == "completed"


async def test_a_lone_start_is_one_transaction(app: df.Dataflows) -> None:
    @app.workflow("alone")
    async def alone(event: df.Event, step: df.Step) -> None:
        return None

    await app.open()
    store = _store(app)
    before = store.start_batches
    for _ in range(3):
        await app.start("alone", {})
    assert store.start_batches - before == 3


async def test_a_store_outage_fails_every_start_of_the_batch(
    app: df.Dataflows, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.workflow("doomed")
    async def doomed(event: df.Event, step: df.Step) -> None:
        return None

    await app.open()
    store = _store(app)

    async def down(items: Any) -> Any:
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(store, "_write_starts", down)
    results = await asyncio.gather(
        *(app.start("doomed", {"n": n}) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    monkeypatch.undo()
    assert await app.list_runs(workflow_id="doomed") == []
    assert await app.start("doomed", {})  # the batcher goes on once the store is back


async def test_batched_starts_keep_flow_control(app: df.Dataflows) -> None:
    running = 0
    most = 0

    @app.workflow(
        "limited",
        concurrency=df.Concurrency(1, key="data.customer"),
        rate_limit=df.RateLimit(2, 3600),
        idempotency="data.order",
    )
    async def limited(event: df.Event, step: df.Step) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    await app.open()
    before = _store(app).start_batches
    orders = [n // 2 for n in range(24)]  # each order twice: the second call gets the first's run
    ids = await asyncio.gather(
        *(app.start("limited", {"customer": "c", "order": o}) for o in orders)
    )
    assert _store(app).start_batches - before < len(orders)
    assert len(set(ids)) == 12, "the workflow's idempotency key holds inside a batch"
    assert all(ids[n] == ids[n + 1] for n in range(0, 24, 2))
    # Starts are never dropped by the rate limit; the concurrency key holds them one at a time.
    async with worker(app, concurrency=8):
        for run_id in set(ids):
            assert (await app.wait_for_run(run_id, timeout=30)).status == "completed"
    assert most == 1


async def test_two_apps_starting_the_same_keys_in_opposite_orders(make_app: MakeApp) -> None:
    apps = [make_app(), make_app()]
    for app in apps:

        @app.workflow("shared")
        async def shared(event: df.Event, step: df.Step) -> None:
            return None

        await app.open()
    keys = [f"k{n}" for n in range(200)]
    for _ in range(10):
        first, second = await asyncio.gather(
            asyncio.gather(*(apps[0].start("shared", {}, idempotency_key=k) for k in keys)),
            asyncio.gather(
                *(apps[1].start("shared", {}, idempotency_key=k) for k in reversed(keys))
            ),
        )
        assert first == list(reversed(second)), "each key has one run, whoever started it"
    assert len(await apps[0].list_runs(workflow_id="shared", limit=500)) == len(keys)


async def test_a_batch_gives_up_keys_past_their_window(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    @clock_app.workflow("daily", idempotency="data.order")
    async def daily(event: df.Event, step: df.Step) -> None:
        return None

    await clock_app.open()
    old = await clock_app.start("daily", {"order": 1, "n": 0})
    clock.advance(24 * 3600)
    store = _store(clock_app)
    before = store.start_batches
    # The first call is written alone; the five of order 1 share the next batch, which gives the
    # day-old run's key up and creates one run for them, its first caller's.
    ids = await asyncio.gather(
        clock_app.start("daily", {"order": 2, "n": 9}),
        *(clock_app.start("daily", {"order": 1, "n": n}) for n in range(1, 6)),
    )
    assert store.start_batches - before == 2
    [fresh] = set(ids[1:])
    assert fresh not in (old, ids[0])
    assert (await clock_app.get_run(fresh)).event.data == {"order": 1, "n": 1}
    assert (await clock_app.get_run(old)).event.data == {"order": 1, "n": 0}
    assert len(await clock_app.list_runs(workflow_id="daily")) == 3
