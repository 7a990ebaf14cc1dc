"""Failover without waiting out the lease: a worker that dies loses its runs within about a second.

Each worker holds a lock while its process lives (a PostgreSQL session advisory lock, an OS file
lock beside the SQLite file). The lease here is 30 s: a take-over within seconds can only come
from the dead worker's lock being seen free. A paused worker keeps its lock, so its runs wait for
the lease, and the lease token fences it (tests/faults/test_fencing.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psycopg
import pytest

from dataflows.store.postgres import worker_lock_class
from tests.faults.conftest import Faults, assert_steps_unique, eventually, faults_on
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

LONG_LEASE = 30.0
#: The worst take-over seen while the whole suite loads both cores is well under this; a lease
#: expiry would take LONG_LEASE.
TAKE_OVER_LIMIT = 3.0


async def test_a_killed_workers_run_resumes_elsewhere_within_seconds(faults: Faults) -> None:
    dying = faults.start_worker("dying", FAULTS_BLOCK=1, FAULTS_LEASE=LONG_LEASE)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")
    rescuer = faults.start_worker("rescuer", FAULTS_LEASE=LONG_LEASE)
    await eventually(lambda: _count(faults, 2), 15, "the rescuer to register")

    killed_at = time.monotonic()
    dying.kill()
    await eventually(lambda: len(faults.pids("started", run_id)) == 2, 10, "the take-over")
    took = time.monotonic() - killed_at
    assert took < TAKE_OVER_LIMIT, f"took over after {took:.2f} s"

    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 1
    assert run.result["block"]["pid"] == rescuer.pid
    assert_steps_unique(run)
    assert "run(s) of a worker that died are taken over" in rescuer.log_text()
    # The dead worker's record went with its runs; the rescuer's stays.
    assert [w for w in await faults.registered()] == [
        w for w in await faults.registered() if f":{rescuer.pid}:" in w
    ]
    assert await _count(faults, 1)


async def test_a_paused_worker_keeps_its_runs_until_its_lease_expires(faults: Faults) -> None:
    lease = 3.0
    paused = faults.start_worker("paused", FAULTS_BLOCK=1, FAULTS_LEASE=lease, FAULTS_POLL=0.2)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")
    await faults.stop_quietly(paused)
    frozen_at = time.monotonic()
    rescuer = faults.start_worker("rescuer", FAULTS_LEASE=lease)

    await eventually(lambda: len(faults.pids("started", run_id)) == 2, 15, "the take-over")
    waited = time.monotonic() - frozen_at
    # Alive but paused: its lock is held, so only the expired lease lets the run go.
    assert waited >= lease - 1.0, f"taken over {waited:.2f} s after the pause"
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.result["block"]["pid"] == rescuer.pid
    paused.signal(signal.SIGCONT)


async def test_postgres_a_worker_whose_session_ends_keeps_its_run(
    pg_url: DbTarget, scratch: Path
) -> None:
    """The server ends the session holding a live worker's lock (pg_terminate_backend here; a
    database restart does the same): the worker locks again at once, well within the grace the
    other worker's looks give a free lock, so its run is never taken over."""
    async with faults_on(pg_url, scratch) as faults:
        holder = faults.start_worker("holder", FAULTS_BLOCK=1, FAULTS_LEASE=LONG_LEASE)
        run_id = await faults.client.start("blocker", {})
        await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")
        rescuer = faults.start_worker("rescuer", FAULTS_LEASE=LONG_LEASE)
        await eventually(lambda: _count(faults, 2), 15, "the rescuer to register")

        schema = pg_url.schema or "dataflows"
        with psycopg.connect(pg_url.url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
                f" JOIN {schema}.workers w ON l.objid::bigint = w.lock_key AND w.id LIKE %s"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid::bigint = %s",
                [f"%:{holder.pid}:%", worker_lock_class(schema) & 0xFFFFFFFF],
            ).fetchall()
        assert ended == [(True,)]
        await asyncio.sleep(2.0)  # ten graces, and the rescuer looks about ten times
        (faults.scratch / f"release-{run_id}").touch()

        run = await faults.wait_done(run_id)
        assert run.status == "completed", run.error
        assert run.recoveries == 0
        assert faults.pids("started", run_id) == [holder.pid]
        assert "taken over" not in rescuer.log_text()
        assert await _count(faults, 2)


async def _count(faults: Faults, n: int) -> bool:
    return len(await faults.registered()) == n
