"""PostgreSQL: event intake hands the runs an event wakes to an idle worker of another process.

An idle worker offers its free slots (``workers.offered``); an intake with no worker of its own
to claim for claims the runs it made runnable for that worker and sends them in the ``NOTIFY``
payload, so the worker begins them without a claim round trip. Two apps on one schema stand for
two processes: the worker's, and a client that only sends events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import dataflows as df
from dataflows.records import ClaimedRun
from dataflows.worker import Worker
from tests.engine.conftest import eventually, wait_status, worker
from tests.pg import DbTarget

Handed = list[list[str]]


@pytest.fixture
async def apps(pg_url: DbTarget) -> AsyncIterator[tuple[df.Dataflows, df.Dataflows]]:
    schema = pg_url.schema or "dataflows"
    own, client = df.Dataflows(pg_url.url, schema=schema), df.Dataflows(pg_url.url, schema=schema)
    yield own, client
    await own.close()
    await client.close()


def waiter(app: df.Dataflows, calls: dict[str, int], big: int = 0) -> None:
    @app.workflow("waiter")
    async def wait(event: df.Event, step: df.Step) -> Any:
        async def before() -> str:
            calls["before"] = calls.get("before", 0) + 1
            return "x" * big

        await step.run("before", before)
        got = await step.wait_for_event("go", "go", match="data.k", timeout="1h")
        assert got is not None

        async def after() -> int:
            calls["after"] = calls.get("after", 0) + 1
            return int(got.data["k"])

        return await step.run("after", after)


async def waiting(app: df.Dataflows, k: int) -> str:
    """A run of ``waiter`` started and suspended in its wait for ``go`` with ``data.k == k``."""
    run_id = await app.start("waiter", {"k": k})
    await wait_status(app, run_id, "waiting")
    return run_id


def record_handovers(app: df.Dataflows, w: Worker) -> Handed:
    """Wrap the worker's assignee to note the run ids each notification handed it."""
    handed: Handed = []
    assignee = app.store._assignees[w.id]

    def noted(runs: list[ClaimedRun], more: bool) -> None:
        handed.append([run.id for run in runs])
        assignee(runs, more)

    app.store.add_assignee(w.id, noted)
    return handed


def offered(target: DbTarget, worker_id: str) -> int:
    with psycopg.connect(target.url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT offered FROM {target.schema}.workers WHERE id = %s", [worker_id]
        ).fetchone()
    return -1 if row is None else int(row[0])


async def test_an_event_sent_elsewhere_hands_the_woken_run_to_the_idle_worker(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls)
    async with worker(own, concurrency=4) as w:
        run_id = await waiting(own, 7)
        await eventually(lambda: offered(pg_url, w.id) == 4)  # idle: all its slots
        handed = record_handovers(own, w)
        await client.send("go", {"k": 7})
        run = await own.wait_for_run(run_id, timeout=10)
        assert handed == [[run_id]]
        await eventually(lambda: offered(pg_url, w.id) == 4)  # idle again: offered again
    assert (run.status, run.result, run.recoveries) == ("completed", 7, 0)
    assert calls == {"before": 1, "after": 1}


async def test_a_batch_of_events_is_left_to_the_workers_claims(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    """Handing over is for an event sent to resume or start runs now; a batch of more than 4
    (``send_many``, a busy webhook) wakes the workers to claim in bulk, as before."""
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls)
    async with worker(own, concurrency=8) as w:
        run_ids = [await own.start("waiter", {"k": k}) for k in range(5)]
        for run_id in run_ids:
            await wait_status(own, run_id, "waiting")
        await eventually(lambda: offered(pg_url, w.id) == 8)
        handed = record_handovers(own, w)
        await client.send_many([("go", {"k": k}, None) for k in range(5)])
        runs = [await own.wait_for_run(run_id, timeout=10) for run_id in run_ids]
    assert handed == []
    assert [(run.status, run.result) for run in runs] == [("completed", k) for k in range(5)]


async def test_a_worker_with_no_free_slot_gives_a_handed_run_back_to_the_queue(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    """An offer out of date (the worker filled up since) costs a round trip, never a slot."""
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls)
    release = asyncio.Event()

    @own.workflow("busy")
    async def busy(event: df.Event, step: df.Step) -> str:
        async def hold() -> str:
            await release.wait()
            return "done"

        return str(await step.run("hold", hold))

    async with worker(own, concurrency=1) as w:
        run_id = await waiting(own, 1)
        await eventually(lambda: offered(pg_url, w.id) == 1)
        busy_id = await own.start("busy")
        await wait_status(own, busy_id, "running")
        await eventually(lambda: offered(pg_url, w.id) == 0)  # full: the offer is withdrawn
        await own.store.offer_slots(w.id, 1, 30.0)  # an offer out of date: the slot is taken
        handed = record_handovers(own, w)
        await client.send("go", {"k": 1})
        await eventually(lambda: handed == [[run_id]])
        await wait_status(own, run_id, "queued")  # given back, not begun
        assert len(w._active) == 1
        release.set()
        run = await own.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result, run.recoveries) == ("completed", 1, 0)
    assert calls == {"before": 1, "after": 1}


async def test_a_run_whose_history_is_too_large_to_send_is_claimed_as_usual(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls, big=10_000)  # a NOTIFY payload holds under 8,000 bytes
    async with worker(own, concurrency=2) as w:
        run_id = await waiting(own, 3)
        await eventually(lambda: offered(pg_url, w.id) == 2)
        handed = record_handovers(own, w)
        await client.send("go", {"k": 3})
        run = await own.wait_for_run(run_id, timeout=10)
    assert handed == []  # the claim for the worker was undone; its own claim took the run
    assert (run.status, run.result, run.recoveries) == ("completed", 3, 0)
    assert calls == {"before": 1, "after": 1}


async def test_the_offer_of_a_worker_whose_process_died_is_not_taken(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls)
    async with worker(own, concurrency=1):
        run_id = await waiting(own, 2)
    # A worker recorded with an offer but no process holding its lock (it died a moment ago).
    with psycopg.connect(pg_url.url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {pg_url.schema}.workers (id, lock_key, registered_at, offered)"
            " VALUES ('gone', 2147483000, 0, 5)"
        )
    await client.send("go", {"k": 2})
    run = await own.get_run(run_id)
    assert run.status == "queued"  # woken for any worker to claim, not leased to the dead one
    async with worker(own, concurrency=1):
        run = await own.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result, run.recoveries) == ("completed", 2, 0)


async def test_a_stopping_worker_withdraws_its_offer_and_leaves_no_run_leased_to_it(
    pg_url: DbTarget, apps: tuple[df.Dataflows, df.Dataflows]
) -> None:
    own, client = apps
    calls: dict[str, int] = {}
    waiter(own, calls)
    async with worker(own, concurrency=2) as w:
        run_id = await waiting(own, 5)
        await eventually(lambda: offered(pg_url, w.id) == 2)
        own.store.remove_assignee(w.id)  # as if its notification never arrived
        await client.send("go", {"k": 5})
        await eventually(lambda: _leased_to(pg_url, run_id) == w.id)
    # Stopped: its record is gone, and the run claimed for it went back to the queue.
    assert offered(pg_url, w.id) == -1
    assert (await own.get_run(run_id)).status == "queued"
    assert _leased_to(pg_url, run_id) is None
    async with worker(own, concurrency=1):
        run = await own.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", 5)
    assert calls == {"before": 1, "after": 1}


def _leased_to(target: DbTarget, run_id: str) -> str | None:
    with psycopg.connect(target.url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT lease_owner FROM {target.schema}.runs WHERE id = %s", [run_id]
        ).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])
