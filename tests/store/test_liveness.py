"""Liveness: a worker's lock lives as long as its process, so its death ends its leases at once.

Two stores on one database stand for two processes: closing a store without unregistering its
worker is what the death of the process does to the lock (PostgreSQL ends the session, the
operating system closes the file). On PostgreSQL a lock must stay free for a grace period
before its runs are taken over, so a live worker whose connection broke can lock again.
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from dataflows.store import Store
from dataflows.store.postgres import worker_lock_class
from tests.pg import DbTarget
from tests.store.builders import LEASE, T0, new_run
from tests.store.conftest import new_store

GRACE = 0.2  # the PostgreSQL store's; SQLite needs none (a file lock is never lost while alive)


async def held_by(store: Store, worker_id: str, *run_ids: str) -> None:
    for run_id in run_ids:
        await store.start_run(new_run(run_id), T0)
    claimed = await store.claim_runs(worker_id, len(run_ids), LEASE, T0)
    assert sorted(c.id for c in claimed) == sorted(run_ids)


async def die(target: DbTarget, store: Store, worker_id: str) -> None:
    """Close ``store`` as its process's death would, and wait until the server has ended the
    session holding ``worker_id``'s lock (a backend exits a moment after its client goes)."""
    if target.kind != "postgres":
        await store.close()  # the file lock goes with the close
        return
    schema = target.schema or "dataflows"
    lock_class = worker_lock_class(schema) & 0xFFFFFFFF
    with psycopg.connect(target.url, autocommit=True) as admin:
        row = admin.execute(f"SELECT lock_key FROM {schema}.workers WHERE id = %s", [worker_id])
        key = row.fetchone()
    assert key is not None
    await store.close()
    for _ in range(250):
        with psycopg.connect(target.url, autocommit=True) as admin:
            held = admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = %s AND objid::bigint = %s",
                [lock_class, key[0]],
            ).fetchone()
        if held is not None and held[0] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the session of {worker_id} still holds its lock")


def end_session_of(pg: DbTarget, worker_id: str) -> None:
    """End the server session holding ``worker_id``'s lock, as a database restart or an
    administrator's ``pg_terminate_backend`` does, while its process lives on."""
    schema = pg.schema or "dataflows"
    lock_class = worker_lock_class(schema) & 0xFFFFFFFF
    with psycopg.connect(pg.url, autocommit=True) as admin:
        # This schema's lock class and this database only: other tests' stores share the
        # server and number their keys from 1 too.
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND pid <> pg_backend_pid() AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = %s"
            f" AND objid = (SELECT lock_key FROM {schema}.workers WHERE id = %s)",
            [lock_class, worker_id],
        ).fetchall()
    assert ended == [(True,)]


def lock_held(pg: DbTarget, worker_id: str) -> bool:
    """Whether a session holds the lock ``worker_id`` is recorded under."""
    schema = pg.schema or "dataflows"
    with psycopg.connect(pg.url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_locks l"
            f" JOIN {schema}.workers w ON l.objid::bigint = w.lock_key AND w.id = %s"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s",
            [worker_id, worker_lock_class(schema) & 0xFFFFFFFF],
        ).fetchone()
    return row is not None and row[0] == 1


async def reaped(store: Store, now: float) -> list[str]:
    """What reaping takes over, past the grace period of a lock seen free at ``now``."""
    first = await store.reap_workers(now)
    return sorted(first + await store.reap_workers(now + GRACE))


async def test_registered_workers_are_listed_until_they_unregister(store: Store) -> None:
    await store.register_worker("w1", T0)
    await store.register_worker("w2", T0 + 1)
    assert [w for w, _ in await store.list_workers()] == ["w1", "w2"]
    await store.unregister_worker("w1")
    assert await store.list_workers() == [("w2", T0 + 1)]


async def test_a_dead_workers_runs_are_taken_over_before_their_lease_ends(
    db: DbTarget, store: Store
) -> None:
    dying = new_store(db)
    await dying.open()
    await dying.register_worker("dead", T0)
    await held_by(dying, "dead", "r1", "r2")
    await store.register_worker("alive", T0)
    assert await reaped(store, T0 + 1) == []  # its lock is held: nothing happens

    await die(db, dying, "dead")  # the process dies: its lock goes with it
    assert await reaped(store, T0 + 1) == ["r1", "r2"]
    assert [w for w, _ in await store.list_workers()] == ["alive"]
    # Well within the lease, the runs are claimable, and counted as recovered.
    claimed = await store.claim_runs("alive", 10, LEASE, T0 + 2)
    assert sorted(c.id for c in claimed) == ["r1", "r2"]
    assert all(c.recoveries == 1 for c in claimed)
    assert await reaped(store, T0 + 3) == []  # once is enough


async def test_a_worker_that_stopped_cleanly_leaves_nothing_to_take_over(
    db: DbTarget, store: Store
) -> None:
    leaving = new_store(db)
    await leaving.open()
    await leaving.register_worker("leaving", T0)
    await leaving.unregister_worker("leaving")
    await leaving.close()
    assert await store.list_workers() == []
    assert await reaped(store, T0 + 1) == []


async def test_a_live_worker_is_never_taken_over(db: DbTarget, store: Store) -> None:
    await store.register_worker("busy", T0)
    await held_by(store, "busy", "r1")
    other = new_store(db)
    await other.open()
    try:
        for seconds in (1, 10, 100):
            assert await reaped(other, T0 + seconds) == []
        assert [w for w, _ in await other.list_workers()] == ["busy"]
    finally:
        await other.close()


async def test_postgres_a_worker_that_locks_again_within_the_grace_keeps_its_runs(
    pg_url: DbTarget,
) -> None:
    """A database restart ends every session: the live worker's next liveness round trip
    reconnects and locks again before the others' grace runs out, so it keeps its runs."""
    pg = pg_url
    store, reaper = new_store(pg), new_store(pg)
    await store.open()
    await reaper.open()
    try:
        await store.register_worker("blip", T0)
        await held_by(store, "blip", "r1")
        end_session_of(pg, "blip")
        assert await reaper.reap_workers(T0 + 1) == []  # seen free: marked
        assert await store.reap_workers(T0 + 1.2) == []  # its own round trip locks again
        assert await reaper.reap_workers(T0 + 1 + GRACE) == []
        assert [w for w, _ in await reaper.list_workers()] == ["blip"]
    finally:
        await reaper.close()
        await store.close()


async def test_postgres_a_worker_whose_session_ends_locks_again_at_once_by_itself(
    pg_url: DbTarget,
) -> None:
    """The server ending the liveness session (terminated, restarting) is noticed the moment it
    happens, not at the worker's next look: the store reconnects and locks again well within the
    grace, with no call from the worker, and a reaper looking at once and again after the grace
    (in real time) takes nothing."""
    pg = pg_url
    store, reaper = new_store(pg), new_store(pg)
    await store.open()
    await reaper.open()
    try:
        await store.register_worker("blip", time.time())
        await held_by(store, "blip", "r1")
        end_session_of(pg, "blip")
        ended_at = time.monotonic()
        assert await reaper.reap_workers(time.time()) == []  # seen free (or locked again)
        while not lock_held(pg, "blip"):
            assert time.monotonic() - ended_at < GRACE, "not locked again within the grace"
            await asyncio.sleep(0.005)
        await asyncio.sleep(GRACE)
        assert await reaper.reap_workers(time.time()) == []
        assert reaper.reap_due_at is None  # nothing left seen free
        assert [w for w, _ in await reaper.list_workers()] == ["blip"]
        # Its run is still its own: nobody else can claim it.
        assert await reaper.claim_runs("other", 10, LEASE, T0 + 1) == []
    finally:
        await reaper.close()
        await store.close()


async def test_postgres_a_reaper_learns_when_a_free_lock_s_grace_ends(pg_url: DbTarget) -> None:
    dying, reaper = new_store(pg_url), new_store(pg_url)
    await dying.open()
    await reaper.open()
    try:
        await dying.register_worker("dead", T0)
        await held_by(dying, "dead", "r1")
        assert await reaper.reap_workers(T0 + 1) == []
        assert reaper.reap_due_at is None  # every lock held
        await die(pg_url, dying, "dead")
        assert await reaper.reap_workers(T0 + 1) == []
        assert reaper.reap_due_at == T0 + 1 + GRACE  # first seen free now
        assert await reaper.reap_workers(T0 + 1.05) == []
        assert reaper.reap_due_at == T0 + 1 + GRACE  # still counted from the first sight
        assert await reaper.reap_workers(T0 + 1 + GRACE) == ["r1"]
        assert reaper.reap_due_at is None
    finally:
        await reaper.close()


async def test_postgres_a_free_lock_is_taken_over_only_after_the_grace(pg_url: DbTarget) -> None:
    dying, reaper = new_store(pg_url), new_store(pg_url)
    await dying.open()
    await reaper.open()
    try:
        await dying.register_worker("dead", T0)
        await held_by(dying, "dead", "r1")
        await die(pg_url, dying, "dead")
        assert await reaper.reap_workers(T0 + 1) == []
        assert await reaper.reap_workers(T0 + 1 + GRACE / 2) == []
        assert await reaper.reap_workers(T0 + 1 + GRACE) == ["r1"]
    finally:
        await reaper.close()
