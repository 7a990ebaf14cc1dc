"""What only the PostgreSQL store does: schemas, notifications, and surviving lost connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from dataflows.errors import StoreError, StoreUnavailable
from dataflows.records import EventIntake, Lease, NewEvent, NewRun, NewStep
from dataflows.store.postgres import PostgresStore
from tests.pg import DbTarget

T0 = 1_000.0


def new_run(run_id: str) -> NewRun:
    return NewRun(run_id, "wf", NewEvent(f"{run_id}/trigger", "go", json.dumps({}), T0))


@pytest.fixture
async def store(pg_url: DbTarget) -> AsyncIterator[PostgresStore]:
    assert pg_url.schema is not None
    s = PostgresStore(pg_url.url, schema=pg_url.schema, min_size=2, max_size=4)
    await s.open()
    yield s
    await s.close()


def terminate_store_connections(url: str) -> int:
    """Kill every dataflows session on the test database, as a failover or an admin would."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'dataflows'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def listening(store: PostgresStore, url: str) -> asyncio.Event:
    """An event set on every wake-up, returned once the listener hears the database."""
    woke = asyncio.Event()
    store.add_listener(woke.set)
    await until_heard(store, url, woke)
    return woke


async def until_heard(store: PostgresStore, url: str, woke: asyncio.Event) -> None:
    """Notify from outside until the listener hears it (it may still be connecting)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(100):
            woke.clear()
            await conn.execute("SELECT pg_notify(%s, 'probe')", [store.channel])
            try:
                await asyncio.wait_for(woke.wait(), 0.1)
            except TimeoutError:
                continue
            # Woken by a probe or by the listener's own call on connecting: listening now, so
            # one last probe is heard, after any earlier one still on its way. The wake-up seen
            # next may be an earlier probe's, delivered late: wait until none has come for a
            # while, so that no probe wakes the store after this returns.
            woke.clear()
            await conn.execute("SELECT pg_notify(%s, 'last probe')", [store.channel])
            await asyncio.wait_for(woke.wait(), 10)
            while woke.is_set():
                woke.clear()
                await asyncio.sleep(0.3)
            return
    pytest.fail("the listener never heard a notification")


def test_schema_names_are_identifiers() -> None:
    for bad in ("", "a-b", "a;drop table x", '"x"', "1abc", "x" * 64):
        with pytest.raises(ValueError):
            PostgresStore("postgresql://localhost/x", schema=bad)


async def test_open_creates_the_schema(pg_url: DbTarget) -> None:
    schema = f"Fresh_{secrets.token_hex(4)}"  # mixed case: quoted everywhere
    store = PostgresStore(pg_url.url, schema=schema)
    try:
        await store.open()
        assert await store.start_run(new_run("r1"), T0) == ("r1", True)
        assert await store.migrate() == []
        with psycopg.connect(pg_url.url) as conn:
            found = conn.execute(
                sql.SQL("SELECT id FROM {}").format(sql.Identifier(schema, "runs"))
            ).fetchall()
        assert found == [("r1",)]
        woke = await listening(store, pg_url.url)  # the channel works with this name too
        other = PostgresStore(pg_url.url, schema=schema)
        await other.open()
        try:
            await other.start_run(new_run("r2"), T0)
        finally:
            await other.close()
        await asyncio.wait_for(woke.wait(), 10)
    finally:
        await store.close()
        with psycopg.connect(pg_url.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_database_time_and_ping(store: PostgresStore) -> None:
    await store.ping()
    assert abs(await store.database_time() - time.time()) < 5


async def test_a_closed_store_says_so(pg_url: DbTarget) -> None:
    store = PostgresStore(pg_url.url, schema=pg_url.schema or "dataflows")
    with pytest.raises(StoreError):
        await store.ping()
    await store.close()  # closing an unopened store is harmless


async def test_unreachable_database_is_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert time.monotonic() - started < 5
    assert isinstance(caught.value.__cause__, psycopg.Error)
    with pytest.raises(StoreError):
        await store.ping()
    await store.close()


async def test_exhausted_pool_is_unavailable_not_a_hang(pg_url: DbTarget) -> None:
    store = PostgresStore(pg_url.url, schema=pg_url.schema or "x", max_size=1, timeout=0.5)
    await store.open()
    try:
        assert store._pool is not None
        async with store._pool.connection():  # the only connection, held elsewhere
            with pytest.raises(StoreUnavailable):
                await store.ping()
        await store.ping()
    finally:
        await store.close()


async def test_other_stores_are_woken_and_a_store_not_twice(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    woke = await listening(store, pg_url.url)
    calls = 0

    def count() -> None:
        nonlocal calls
        calls += 1

    store.add_listener(count)
    await store.start_run(new_run("mine"), T0)
    await asyncio.sleep(0.3)  # time for our own notification to come back, and be skipped
    assert calls == 1
    woke.clear()

    other = PostgresStore(pg_url.url, schema=pg_url.schema or "x")
    await other.open()
    try:
        await other.start_run(new_run("theirs"), T0)
        await asyncio.wait_for(woke.wait(), 10)
    finally:
        await other.close()


async def test_terminated_connections_are_replaced(pg_url: DbTarget, store: PostgresStore) -> None:
    woke = await listening(store, pg_url.url)
    await asyncio.gather(*(store.ping() for _ in range(4)))  # fill the pool
    assert terminate_store_connections(pg_url.url) >= 2

    failures = 0
    for _ in range(20):
        try:
            assert await store.get_run("r0") is None  # a program on a pooled connection
            break
        except StoreUnavailable as exc:
            assert isinstance(exc.__cause__, psycopg.Error)
            failures += 1
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the store did not recover")
    assert failures <= 2  # the dead siblings are swept, not handed out one by one
    await store.ping()
    assert await store.start_run(new_run("r0"), T0) == ("r0", True)

    # The listener reconnects by itself and hears other stores again.
    await until_heard(store, pg_url.url, woke)
    other = PostgresStore(pg_url.url, schema=pg_url.schema or "x")
    await other.open()
    try:
        await other.start_run(new_run("after"), T0)
        await asyncio.wait_for(woke.wait(), 10)
    finally:
        await other.close()


async def test_a_claim_in_flight_fences_the_old_holders_write(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    await store.start_run(new_run("r1"), T0)
    [held] = await store.claim_runs("w1", 1, 10, T0)
    step = NewStep("a", "run", "completed", "1", None, 1, T0)
    runs = sql.Identifier(pg_url.schema or "x", "runs")
    async with await psycopg.AsyncConnection.connect(pg_url.url) as thief:
        # Another worker's claim of the expired lease, not yet committed.
        await thief.execute(
            sql.SQL("UPDATE {} SET lease_token = lease_token + 1 WHERE id = 'r1'").format(runs)
        )
        write = asyncio.create_task(store.record_step(Lease("r1", held.lease_token), step, T0 + 20))
        await asyncio.sleep(0.3)
        assert not write.done()  # waits for the claim to settle instead of slipping in
        await thief.commit()
    assert await write is False
    assert await store.load_history("r1") == []


async def test_the_step_connection_is_replaced_when_it_dies(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    await store.start_run(new_run("r1"), T0)
    [held] = await store.claim_runs("w1", 1, 10, T0)
    lease = Lease("r1", held.lease_token)
    assert await store.record_step(lease, NewStep("a", "run", "completed", "1", None, 1, T0), T0)
    assert terminate_store_connections(pg_url.url) >= 1  # the step connection among them
    step = NewStep("b", "run", "completed", '{"x": "é"}', None, 2, T0 + 0.25)
    with pytest.raises(StoreUnavailable) as failed:
        await store.record_step(lease, step, T0 + 1)
    assert isinstance(failed.value.__cause__, psycopg.Error)
    for _ in range(20):  # the pool's own connections may fail once more before they renew
        try:
            assert await store.record_step(lease, step, T0 + 1)
            break
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    history = await store.load_history("r1")
    assert [(r.key, r.output, r.attempts, r.started_at) for r in history] == [
        ("a", 1, 1, T0),
        ("b", {"x": "é"}, 2, T0 + 0.25),
    ]


async def test_the_start_connection_is_replaced_when_it_dies(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    woke = await listening(store, pg_url.url)
    assert await store.start_run(new_run("r1"), T0) == ("r1", True)
    assert terminate_store_connections(pg_url.url) >= 1  # the start connection among them
    with pytest.raises(StoreUnavailable) as failed:
        await store.start_run(new_run("r2"), T0)
    assert isinstance(failed.value.__cause__, psycopg.Error)
    woke.clear()
    # The next batch opens a fresh connection: its runs are created, and the workers woken.
    answers = await asyncio.gather(*(store.start_run(new_run(f"s{n}"), T0) for n in range(5)))
    assert answers == [(f"s{n}", True) for n in range(5)]
    assert woke.is_set()
    assert await store.get_run("r2") is None
    assert await store.start_run(new_run("r1"), T0) == ("r1", False)


async def test_a_start_connection_lost_while_idle_is_replaced_before_the_next_start(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    assert await store.start_run(new_run("r1"), T0) == ("r1", True)
    writer = store._start_writer
    assert writer is not None
    assert terminate_store_connections(pg_url.url) >= 1  # as a restart or a failover would
    for _ in range(100):  # the writer hears its session end while nothing is being written
        if writer.closed:
            break
        await asyncio.sleep(0.05)
    assert writer.closed
    # So the next start is not refused: it opens a fresh connection.
    assert await store.start_run(new_run("r2"), T0) == ("r2", True)
    assert store._start_writer is not writer


async def test_a_write_cancelled_while_it_waits_leaves_the_next_one_working(
    pg_url: DbTarget, store: PostgresStore
) -> None:
    await store.start_run(new_run("r1"), T0)
    [held] = await store.claim_runs("w1", 1, 10, T0)
    lease = Lease("r1", held.lease_token)
    runs = sql.Identifier(pg_url.schema or "x", "runs")
    async with await psycopg.AsyncConnection.connect(pg_url.url) as other:
        await other.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = 'r1' FOR UPDATE").format(runs)
        )  # the step's insert waits for this lock
        step = NewStep("a", "run", "completed", "1", None, 1, T0)
        write = asyncio.create_task(store.record_step(lease, step, T0 + 1))
        await asyncio.sleep(0.2)
        assert not write.done()
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        await other.rollback()
    step = NewStep("b", "run", "completed", "2", None, 1, T0)
    assert await store.record_step(lease, step, T0 + 2)
    keys = [r.key for r in await store.load_history("r1")]
    assert "b" in keys and keys.count("a") <= 1  # the cancelled one: committed or not, once


async def test_concurrent_steps_share_one_insert_each_fenced(store: PostgresStore) -> None:
    leases = []
    for n in range(3):
        await store.start_run(new_run(f"r{n}"), T0)
        [held] = await store.claim_runs("w1", 1, 10, T0)
        leases.append(Lease(held.id, held.lease_token))
    stale = Lease(leases[2].run_id, leases[2].token + 1)
    steps = [NewStep(f"s{n}", "run", "completed", str(n), None, 1, T0) for n in range(3)]
    recorded = await asyncio.gather(
        store.record_step(leases[0], steps[0], T0),
        store.record_step(leases[1], steps[1], T0),
        store.record_step(stale, steps[2], T0),
        store.record_step(leases[0], steps[0], T0),  # the same step again: recorded once
    )
    assert list(recorded) == [True, True, False, True]
    assert [r.output for r in await store.load_history(leases[0].run_id)] == [0]
    assert [r.output for r in await store.load_history(leases[1].run_id)] == [1]
    assert await store.load_history(leases[2].run_id) == []


async def test_intake_and_claims_keep_a_session_each_and_replace_a_lost_one(
    store: PostgresStore, pg_url: DbTarget
) -> None:
    async def sessions() -> set[int]:
        """The sessions the next intake and claim run on (their backend pids)."""
        pids: set[int] = set()
        for purpose in ("intake", "claim"):
            async with store._own_connection(purpose) as conn:
                cursor = await conn.execute("SELECT pg_backend_pid()")
                row = await cursor.fetchone()
                assert row is not None
                pids.add(row[0])
        return pids

    def intake(n: int) -> EventIntake:
        return EventIntake(NewEvent(f"e{n}", "go", "{}", T0), (new_run(f"r{n}"),))

    await store.send_events([intake(0)], T0)
    assert [r.id for r in await store.claim_runs("w", 10, 30.0, T0)] == ["r0"]
    kept = await sessions()
    assert len(kept) == 2
    for n in range(1, 4):  # the same sessions every time, however the pool turns
        await store.send_events([intake(n)], T0)
        assert [r.id for r in await store.claim_runs("w", 10, 30.0, T0)] == [f"r{n}"]
        assert await sessions() == kept

    terminate_store_connections(pg_url.url)
    for n in range(4, 8):  # a call on the lost session fails; the next one gets a fresh one
        with contextlib.suppress(StoreUnavailable):
            await store.send_events([intake(n)], T0)
        with contextlib.suppress(StoreUnavailable):
            await store.claim_runs("w", 10, 30.0, T0)
    fresh = await sessions()
    assert fresh.isdisjoint(kept) and len(fresh) == 2
    await store.send_events([intake(8)], T0)
    claimed = {r.id for r in await store.claim_runs("w", 10, 30.0, T0)}
    assert "r8" in claimed

    # While the kept session is busy, a pooled one serves: both calls go through.
    async with store._own_connection("intake"):
        await store.send_events([intake(9)], T0)
    assert "r9" in {r.id for r in await store.claim_runs("w", 10, 30.0, T0)}
