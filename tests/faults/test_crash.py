"""kill -9 of a real worker at named crash points, then recovery by a fresh worker process.

Invariants (guarantees 1, 2, 5 and 6): the run completes with the right result; every step
function that finished ran exactly once, the interrupted one at most twice; no step key is recorded
twice; stored results are reused on replay (their outputs carry the first worker's pid).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

import dataflows as df
from tests.faults.conftest import Faults, assert_steps_unique, eventually

pytestmark = pytest.mark.crash


@pytest.mark.parametrize("point", ["in_step", "after_commit"])
async def test_kill_at_crash_point(faults: Faults, point: str) -> None:
    first = faults.start_worker("first")
    run_id = await faults.client.start("crashy", {"crash": point, "n": 1})

    assert await first.wait_exit(20) == -9, first.log_text()
    assert (faults.scratch / f"crashed-{point}-{run_id}").exists()
    assert (await faults.client.get_run(run_id)).status == "running"  # its lease will expire

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)

    assert run.status == "completed", run.error
    assert [s.key for s in run.steps] == ["a", "b", "c"]
    assert_steps_unique(run)
    assert run.recoveries == 1
    result = run.result
    assert (result["a"]["n"], result["b"]["n"], result["c"]["n"]) == (2, 20, 25)
    assert result["a"]["pid"] == first.pid  # recorded before the crash, replayed from the store
    assert result["c"]["pid"] == second.pid
    if point == "in_step":
        # The side effect happened, the result was never committed: b runs again (at least once).
        assert faults.calls(run_id) == {"a": 1, "b": 2, "c": 1}
        assert result["b"]["pid"] == second.pid
    else:
        # b's result was committed before the crash: the replay must not call it again.
        assert faults.calls(run_id) == {"a": 1, "b": 1, "c": 1}
        assert result["b"]["pid"] == first.pid
    assert second.alive()


async def test_kill_while_sleeping(faults: Faults) -> None:
    first = faults.start_worker("first")
    # Longer than inline_sleep_limit (2 s): suspended in the database, held by no worker.
    run_id = await faults.client.start("sleeper", {"seconds": 3.0})
    waiting = await faults.wait_status(run_id, "waiting")
    assert waiting.wake_at is not None and waiting.wait_reason and "nap" in waiting.wait_reason
    wake_at = waiting.wake_at.timestamp()

    first.kill()  # from outside, while the run holds no worker at all
    assert first.popen.returncode == -9
    await asyncio.sleep(max(0.0, wake_at - time.time()) + 0.2)
    assert (await faults.client.get_run(run_id)).status == "waiting"  # nobody to wake it

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)

    assert run.status == "completed", run.error
    assert [s.key for s in run.steps] == ["a", "nap", "c"]
    assert_steps_unique(run)
    assert run.recoveries == 0  # killed while suspended: no lease was lost
    assert faults.calls(run_id) == {"a": 1, "c": 1}
    assert run.result["a"]["pid"] == first.pid
    assert run.result["c"]["pid"] == second.pid
    steps = {s.key: s for s in run.steps}
    c_started = steps["c"].started_at
    assert c_started is not None and c_started.timestamp() >= wake_at  # never early


async def test_kill_while_holding_a_short_sleep(faults: Faults) -> None:
    """A sleep within inline_sleep_limit is waited out in the worker, its wake time committed:
    a worker killed meanwhile loses only its lease, and the next one treats the sleep as
    elapsed, never early."""
    first = faults.start_worker("first")
    run_id = await faults.client.start("sleeper", {"seconds": 1.5})

    async def held() -> df.Run | None:
        run = await faults.client.get_run(run_id)
        pending = [s for s in run.steps if s.key == "nap" and s.status == "waiting"]
        return run if pending and run.status == "running" else None

    run = await eventually(held, 15, "the sleep to be held in the worker")
    nap = {s.key: s for s in run.steps}["nap"]
    assert nap.wake_at is not None
    wake_at = nap.wake_at.timestamp()
    first.kill()
    assert first.popen.returncode == -9

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert [s.key for s in run.steps] == ["a", "nap", "c"]
    assert_steps_unique(run)
    assert run.recoveries == 1  # the lease was lost with the worker
    assert faults.calls(run_id) == {"a": 1, "c": 1}
    assert run.result["c"]["pid"] == second.pid
    c_started = {s.key: s for s in run.steps}["c"].started_at
    assert c_started is not None and c_started.timestamp() >= wake_at  # never early


async def test_kill_while_waiting_for_event(faults: Faults) -> None:
    key = secrets.token_hex(4)
    first = faults.start_worker("first")
    run_id = await faults.client.start("waiter", {"key": key})
    waiting = await faults.wait_status(run_id, "waiting")
    assert waiting.wait_reason and "faults/approved" in waiting.wait_reason

    first.kill()
    assert first.popen.returncode == -9
    # Sent while no worker is alive: one that does not match, then the one that does.
    other = await faults.client.send("faults/approved", {"key": "someone-else", "approved": False})
    sent = await faults.client.send("faults/approved", {"key": key, "approved": True})
    assert other.run_ids == () and sent.run_ids == ()
    assert (await faults.client.get_run(run_id)).status in ("queued", "waiting")

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)

    assert run.status == "completed", run.error
    assert [s.key for s in run.steps] == ["a", "approval", "c"]
    assert_steps_unique(run)
    assert run.result["approved"] is True
    assert run.result["a"]["pid"] == first.pid
    assert run.result["c"]["pid"] == second.pid
    assert faults.calls(run_id) == {"a": 1, "c": 1}
    approval = {s.key: s for s in run.steps}["approval"]
    assert approval.output["id"] == sent.event_id  # exactly the matching event, delivered once
