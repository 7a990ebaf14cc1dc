"""A worker that claims its own run again after the lease expired under it.

That happens when heartbeats could not reach the database for longer than the lease (an outage,
a paused process): the claim loop sees an expired lease and claims the run anew while the older
execution is still in its step. The older execution is fenced; the worker must keep tracking the
newer one (heartbeats, graceful hand-over on shutdown). Deterministic, in one process: a
ManualClock expires the lease before the next heartbeat (every lease/3 s of real time) is due.
"""

from __future__ import annotations

import asyncio

import pytest

import dataflows as df
from tests.faults.conftest import eventually
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

LEASE = 30.0  # heartbeats every 10 s of real time: none happens during the test


async def test_reclaimed_run_stays_tracked(db: DbTarget) -> None:
    clock = df.ManualClock()
    app = df.Dataflows(db.url, schema=db.schema or "dataflows", clock=clock)
    gates = [asyncio.Event() for _ in range(3)]
    calls: list[int] = []

    async def block() -> int:
        n = len(calls)
        calls.append(n)
        await asyncio.wait_for(gates[n].wait(), 20)
        return n

    @app.workflow("reclaimed")
    async def reclaimed(event: df.Event, step: df.Step) -> int:
        value: int = await step.run("block", block)
        return value

    try:
        async with app.worker(concurrency=2, lease_seconds=LEASE, poll_interval=0.05) as worker:
            run_id = await app.start("reclaimed", {})
            await eventually(lambda: len(calls) == 1, 10, "the first execution's step")
            clock.advance(LEASE + 1)  # the lease expires; the worker claims the run again
            await eventually(lambda: len(calls) == 2, 10, "the second execution's step")
            assert (await app.get_run(run_id)).recoveries == 1

            gates[0].set()  # the superseded execution finishes its step: fenced
            await asyncio.sleep(0.3)
            run = await app.get_run(run_id)
            assert run.status == "running" and run.steps == ()

            # Shutdown must still see the live execution: wait for it, then hand the run back.
            await worker.stop(grace=0.2)
            run = await app.get_run(run_id)
            assert run.status == "queued", "the live execution was not released on shutdown"

        gates[2].set()
        async with app.worker(concurrency=2, lease_seconds=LEASE, poll_interval=0.05):
            run = await app.wait_for_run(run_id, timeout=10)
        assert run.status == "completed", run.error
        assert run.result == 2
        assert run.recoveries == 1
    finally:
        for gate in gates:
            gate.set()
        await app.close()
