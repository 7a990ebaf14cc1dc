"""PostgreSQL stopped under a live worker, then started again (survive: never exit or spin).

Runs on a private server of its own (tests/faults/private_pg.py): the shared one is never stopped.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import dataflows as df
from tests.faults.conftest import Faults, assert_steps_unique, eventually, faults_on
from tests.faults.private_pg import PrivatePostgres
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

OUTAGE = 3.0
#: CPU seconds a worker may burn while the database is away for OUTAGE seconds.
CPU_BUDGET = 1.0
#: Lines a worker may log while the database is away for OUTAGE seconds (the outage's start, and
#: the run the blocked step belongs to, whose lease runs out meanwhile).
MAX_OUTAGE_LINES = 3


@pytest.fixture
async def outage_faults(private_pg: PrivatePostgres, scratch: Path) -> AsyncIterator[Faults]:
    async with faults_on(DbTarget(private_pg.url, "faults"), scratch) as harness:
        yield harness


async def finished(faults: Faults, run_id: str, timeout: float) -> df.Run:
    """The finished run; the client's own pooled connections may need a few tries after the
    restart (they died with the server)."""

    async def check() -> df.Run | None:
        try:
            run = await faults.client.get_run(run_id)
        except df.StoreUnavailable:
            return None
        return run if run.done else None

    run: df.Run = await eventually(check, timeout, f"run {run_id} to finish", interval=0.1)
    return run


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_worker_survives_postgres_restart(
    outage_faults: Faults, private_pg: PrivatePostgres, mode: str
) -> None:
    faults = outage_faults
    worker = faults.start_worker("w", FAULTS_BLOCK=1)
    # Over inline_sleep_limit (2 s), so suspended in the database; due during the outage.
    sleeping = await faults.client.start("sleeper", {"seconds": 2.5})
    blocked = await faults.client.start("blocker", {})
    await faults.wait_status(sleeping, "waiting")
    await eventually(lambda: faults.pids("started", blocked), 15, "the blocking step to start")

    logged = len(worker.log_text().splitlines())
    private_pg.stop(mode)
    # During the outage: the sleep comes due, and the blocked step finishes and must record.
    (faults.scratch / f"release-{blocked}").touch()
    before = worker.cpu_seconds()
    await asyncio.sleep(OUTAGE)
    burnt = worker.cpu_seconds() - before
    assert worker.alive(), worker.log_text()
    assert burnt < CPU_BUDGET, f"worker spun: {burnt:.2f}s CPU in {OUTAGE}s of outage"
    assert faults.pids("finished", blocked) == [worker.pid]
    # Dozens of retried operations, one line: the outage's start (its summary comes each minute).
    during = worker.log_text().splitlines()[logged:]
    assert len(during) <= MAX_OUTAGE_LINES, "\n".join(during)
    assert sum("database unreachable" in line for line in during) == 1, "\n".join(during)

    private_pg.start()
    for run_id in (sleeping, blocked):
        run = await finished(faults, run_id, 30)
        assert run.status == "completed", (run.error, worker.log_text())
        assert_steps_unique(run)
    assert faults.calls(sleeping) == {"a": 1, "c": 1}
    # The outage outlived the in-flight run's lease, so once the database is back the worker may
    # claim that run anew (a recovery) and run a step of it twice (at least once), no more.
    block_run = await finished(faults, blocked, 1)
    block_calls = faults.calls(blocked)
    assert block_run.recoveries <= 1
    assert set(block_calls) == {"block", "c"} and max(block_calls.values()) <= 2, block_calls

    back = [line for line in worker.log_text().splitlines() if "reachable again" in line]
    assert len(back) == 1 and "operations retried" in back[0], worker.log_text()

    fresh = await faults.client.start("crashy", {"n": 1})
    run = await finished(faults, fresh, 15)
    assert run.status == "completed", run.error
    assert run.result["c"]["pid"] == worker.pid

    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(15) == 0, worker.log_text()


async def test_a_restart_takes_no_run_from_a_live_worker(
    outage_faults: Faults, private_pg: PrivatePostgres
) -> None:
    """A restart ends every session, so every worker's liveness lock is free for a moment: each
    live worker locks again as soon as the server answers, within the grace the others' looks
    give a free lock, so the run a live worker holds is not taken over."""
    faults = outage_faults
    holder = faults.start_worker("holder", FAULTS_BLOCK=1, FAULTS_LEASE=30.0)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")
    rescuer = faults.start_worker("rescuer", FAULTS_LEASE=30.0)

    async def both_registered() -> bool:
        return len(await faults.registered()) == 2

    await eventually(both_registered, 15, "the rescuer to register")
    private_pg.stop("fast")
    await asyncio.sleep(1.0)
    private_pg.start()
    await asyncio.sleep(2.0)  # both back: the rescuer looks about ten times meanwhile
    (faults.scratch / f"release-{run_id}").touch()

    run = await finished(faults, run_id, 30)
    assert run.status == "completed", (run.error, holder.log_text())
    assert run.recoveries == 0
    assert faults.pids("started", run_id) == [holder.pid]
    assert "taken over" not in rescuer.log_text()
