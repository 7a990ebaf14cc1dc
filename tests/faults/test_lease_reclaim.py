"""A worker that claims its own run again after the lease expired under it.

That happens when heartbeats could not reach the database for longer than the lease (an outage,
a paused process): the claim loop sees an expired lease and claims the run anew while the older
execution is still in its step. If nobody held the run in between, the execution simply goes on
under the new lease (no second execution, no recovery counted). If another worker held it in
between, the older execution is fenced and the worker must track the newer one (heartbeats,
graceful hand-over on shutdown). Deterministic, in one process: a ManualClock expires the lease
before the next heartbeat (every lease/3 s of real time) is due.
"""

from __future__ import annotations

import asyncio

import pytest

import dataflows as df
from tests.faults.conftest import eventually
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

LEASE = 30.0  # heartbeats every 10 s of real time: none happens during the test


def blocking_app(
    db: DbTarget, clock: df.ManualClock
) -> tuple[df.Dataflows, list[asyncio.Event], list[int]]:
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

    return app, gates, calls


async def test_own_reclaimed_run_goes_on_under_the_new_lease(db: DbTarget) -> None:
    clock = df.ManualClock()
    app, gates, calls = blocking_app(db, clock)
    try:
        async with app.worker(concurrency=2, lease_seconds=LEASE, poll_interval=0.05) as worker:
            run_id = await app.start("reclaimed", {})
            await eventually(lambda: len(calls) == 1, 10, "the first execution's step")
            first = worker._tokens[run_id]
            clock.advance(LEASE + 1)  # the lease expires; the worker claims the run again
            await eventually(
                lambda: worker._tokens.get(run_id) == first + 1, 10, "the run to be claimed again"
            )
            gates[0].set()
            run = await app.wait_for_run(run_id, timeout=10)
        assert run.status == "completed", run.error
        assert (run.result, run.recoveries, calls) == (0, 0, [0])
    finally:
        for gate in gates:
            gate.set()
        await app.close()


async def test_reclaimed_run_stays_tracked(db: DbTarget) -> None:
    clock = df.ManualClock()
    app, gates, calls = blocking_app(db, clock)
    try:
        async with app.worker(concurrency=2, lease_seconds=LEASE, poll_interval=0.05) as worker:
            run_id = await app.start("reclaimed", {})
            await eventually(lambda: len(calls) == 1, 10, "the first execution's step")
            # Another worker, whose clock is ahead, takes the run over once the lease has
            # expired by its clock (ours has not moved, so our worker cannot race it), then
            # loses it too.
            ghost_now = clock.now() + LEASE + 1
            assert [r.id for r in await app.store.claim_runs("ghost", 1, 1.0, ghost_now)] == [
                run_id
            ]
            clock.advance(LEASE + 3)  # the ghost's lease expires; our worker claims the run back
            await eventually(lambda: len(calls) == 2, 10, "the second execution's step")
            assert (await app.get_run(run_id)).recoveries == 2

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
        assert run.recoveries == 2
    finally:
        for gate in gates:
            gate.set()
        await app.close()
