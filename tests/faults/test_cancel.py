"""Cancellation with real ``dataflows`` worker processes (``apps/crash_app.py``): a run cancelled
during a sleep held in the worker's memory, or by its workflow's ``cancel_on`` while waiting or
while a step runs, starts no step after the cancel committed (``starts.log`` records every step
start with its time)."""

from __future__ import annotations

import asyncio
import time

from tests.faults.apps import crash_app
from tests.faults.conftest import Faults, eventually

#: A lease this long is renewed every 10 s: a worker learns of the cancel from its next write,
#: not from a heartbeat.
LONG_LEASE = 30.0


def starts(faults: Faults, run_id: str) -> list[tuple[str, float]]:
    """``(step key, time)`` of each step start of ``run_id``, in order."""
    path = faults.scratch / crash_app.STARTS
    lines = path.read_text().splitlines() if path.exists() else []
    found = []
    for line in lines:
        rid, key, at = line.split(" ")
        if rid == run_id:
            found.append((key, float(at)))
    return found


def keys(faults: Faults, run_id: str) -> list[str]:
    return [key for key, _ in starts(faults, run_id)]


async def test_a_run_cancelled_during_a_sleep_held_in_memory_starts_no_further_step(
    faults: Faults,
) -> None:
    worker = faults.start_worker("napper", FAULTS_LEASE=LONG_LEASE)
    run_id = await faults.client.start("nap", {"seconds": 1.5})
    await eventually(lambda: keys(faults, run_id) == ["before"], 20, "the first step")
    await asyncio.sleep(0.3)  # the worker now holds the sleep in memory
    assert (await faults.client.get_run(run_id)).status == "running"
    assert await faults.client.cancel(run_id) == "cancelled"
    cancelled_at = time.time()
    await asyncio.sleep(2.5)  # the sleep is over: the next step would have started by now
    assert keys(faults, run_id) == ["before"], worker.log_text()
    assert all(at < cancelled_at for _, at in starts(faults, run_id))
    run = await faults.client.get_run(run_id)
    assert run.status == "cancelled"
    assert [s.key for s in run.steps] == ["before"]
    assert worker.alive()


async def test_cancel_on_stops_a_waiting_run(faults: Faults) -> None:
    worker = faults.start_worker("waiter", FAULTS_LEASE=LONG_LEASE)
    sent = await faults.client.send("faults/order", {"key": "k1"})
    other = await faults.client.send("faults/order", {"key": "k2"})
    run_id, other_id = sent.run_ids[0], other.run_ids[0]
    await faults.wait_status(run_id, "waiting")
    await faults.wait_status(other_id, "waiting")
    await faults.client.send("faults/cancel", {"key": "k1"})
    cancelled_at = time.time()
    assert (await faults.client.get_run(run_id)).status == "cancelled"
    # The approvals come after: only the run not cancelled goes on.
    await faults.client.send("faults/approved", {"key": "k1"})
    await faults.client.send("faults/approved", {"key": "k2"})
    assert (await faults.wait_done(other_id)).status == "completed"
    await asyncio.sleep(0.5)
    assert keys(faults, run_id) == ["first"], worker.log_text()
    assert all(at < cancelled_at for _, at in starts(faults, run_id))
    assert keys(faults, other_id) == ["first", "last"]
    assert (await faults.client.get_run(run_id)).status == "cancelled"


async def test_cancel_on_stops_a_running_run_after_its_current_step(faults: Faults) -> None:
    worker = faults.start_worker("runner", FAULTS_LEASE=LONG_LEASE, FAULTS_BLOCK=1)
    run_id = (await faults.client.send("faults/order", {"key": "k3", "block": True})).run_ids[0]
    await eventually(lambda: faults.pids("started", run_id) != [], 20, "the blocking step")
    assert (await faults.client.get_run(run_id)).status == "running"
    await faults.client.send("faults/cancel", {"key": "k3"})
    cancelled_at = time.time()
    assert (await faults.client.get_run(run_id)).status == "cancelled"
    (faults.scratch / f"release-{run_id}").write_text("")
    await eventually(lambda: faults.pids("finished", run_id) != [], 20, "the step to finish")
    await asyncio.sleep(1.0)  # the next step would have started by now
    assert keys(faults, run_id) == ["first", "block"], worker.log_text()
    assert all(at < cancelled_at for _, at in starts(faults, run_id))
    run = await faults.client.get_run(run_id)
    assert run.status == "cancelled"
    assert [s.key for s in run.steps] == ["first"]  # the blocking step's result was refused
    assert worker.alive()
