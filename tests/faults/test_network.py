"""A worker behind a TCP proxy that delays, drops or blackholes its PostgreSQL traffic.

Invariants: every run completes with each step function run at most as often as the fault
explains, no step key recorded twice, and a worker cut off past its lease is fenced when its
traffic gets through again (nothing it sends then overwrites what the rescuer recorded).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Faults, assert_steps_unique, eventually, faults_on
from tests.faults.proxy import TcpProxy
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

DROPPED = "lease lost or run cancelled; dropping it"


@pytest.fixture
async def pg_faults(pg_url: DbTarget, scratch: Path) -> AsyncIterator[Faults]:
    async with faults_on(pg_url, scratch) as harness:
        yield harness


@pytest.fixture
def proxy(pg_url: DbTarget) -> Iterator[TcpProxy]:
    running = TcpProxy(pg_url.url).start()
    try:
        yield running
    finally:
        running.close()


async def test_a_slow_network_changes_nothing(pg_faults: Faults, proxy: TcpProxy) -> None:
    faults = pg_faults
    proxy.set_mode("delay", 0.02)  # 40 ms more per round trip
    worker = faults.start_worker("slow", FAULTS_DB_URL=proxy.url("faults-slow"))
    run_ids = [await faults.client.start("crashy", {"n": n}) for n in range(3)]
    for run_id in run_ids:
        run = await faults.wait_done(run_id, timeout=60)
        assert run.status == "completed", run.error
        assert run.recoveries == 0
        assert_steps_unique(run)
        assert faults.calls(run_id) == {"a": 1, "b": 1, "c": 1}
        assert run.result["c"]["pid"] == worker.pid
    assert proxy.connections > 0  # it really went through the proxy


async def test_dropped_connections_are_replaced(pg_faults: Faults, proxy: TcpProxy) -> None:
    faults = pg_faults
    worker = faults.start_worker("w", FAULTS_BLOCK=1, FAULTS_DB_URL=proxy.url("faults-w"))
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")

    assert proxy.drop() > 0  # every connection of the worker reset mid-step
    (faults.scratch / f"release-{run_id}").touch()
    run = await faults.wait_done(run_id, timeout=30)
    assert run.status == "completed", (run.error, worker.log_text())
    assert_steps_unique(run)
    assert run.result["block"]["pid"] == run.result["c"]["pid"] == worker.pid
    assert faults.calls(run_id) == {"block": 1, "c": 1}  # its result was recorded, not rerun

    # And it goes on working through the new connections.
    fresh = await faults.client.start("crashy", {"n": 1})
    assert (await faults.wait_done(fresh, timeout=30)).status == "completed"
    assert worker.alive()
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(15) == 0, worker.log_text()


async def test_blackholed_worker_is_fenced_when_its_traffic_returns(
    pg_faults: Faults, proxy: TcpProxy
) -> None:
    faults = pg_faults
    cut = faults.start_worker("cut", FAULTS_BLOCK=1, FAULTS_DB_URL=proxy.url("faults-cut"))
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")

    # Its traffic vanishes: its heartbeats and writes hang; its 1 s lease runs out.
    proxy.set_mode("blackhole")
    (faults.scratch / f"release-{run_id}").touch()  # its step finishes; the record hangs
    rescuer = faults.start_worker("rescuer")  # straight to the database
    run = await faults.wait_done(run_id, timeout=30)
    assert run.status == "completed", run.error
    assert run.recoveries == 1
    assert run.result["block"]["pid"] == run.result["c"]["pid"] == rescuer.pid
    await eventually(lambda: cut.pid in faults.pids("finished", run_id), 10, "the cut step")

    # The network heals: everything the cut-off worker sent arrives now, and is fenced.
    proxy.set_mode("pass")
    await eventually(lambda: DROPPED in cut.log_text(), 20, "the cut worker to drop the run")
    after = await faults.client.get_run(run_id)
    assert (after.status, after.result, after.completed_at) == (
        "completed",
        run.result,
        run.completed_at,
    )
    assert after.steps == run.steps
    assert_steps_unique(after)
    assert faults.calls(run_id) == {"block": 2, "c": 1}

    await asyncio.sleep(0.5)
    assert cut.alive(), cut.log_text()  # fenced, not crashed
    cut.signal(signal.SIGTERM)
    assert await cut.wait_exit(15) == 0, cut.log_text()
    assert "Traceback" not in cut.log_text()
