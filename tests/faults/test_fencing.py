"""A zombie worker (SIGSTOP past its lease) cannot record anything once it wakes up (guarantee 3)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.faults.conftest import Faults, assert_steps_unique, eventually

pytestmark = pytest.mark.crash

DROPPED = "lease lost or run cancelled; dropping it"


async def test_paused_worker_is_fenced(faults: Faults) -> None:
    zombie = faults.start_worker("zombie", FAULTS_BLOCK=1, FAULTS_POLL=0.2)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")
    await faults.stop_quietly(zombie)

    # The zombie's lease (1 s) expires while it is frozen; the next worker takes the run over.
    rescuer = faults.start_worker("rescuer")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 1
    assert run.result["block"]["pid"] == rescuer.pid
    assert faults.pids("started", run_id) == [zombie.pid, rescuer.pid]

    # Wake the zombie: its step finishes, and its write must be rejected.
    (faults.scratch / f"release-{run_id}").touch()
    zombie.signal(signal.SIGCONT)
    await eventually(lambda: zombie.pid in faults.pids("finished", run_id), 10, "zombie step")
    await eventually(lambda: DROPPED in zombie.log_text(), 10, "the zombie to drop the run")

    after = await faults.client.get_run(run_id)
    assert after.status == "completed"
    assert after.result == run.result
    assert after.completed_at == run.completed_at
    assert after.steps == run.steps  # the zombie's output never replaced the rescuer's
    assert {s.key: s.output for s in after.steps}["block"]["pid"] == rescuer.pid
    assert_steps_unique(after)
    assert faults.calls(run_id) == {"block": 2, "c": 1}

    await asyncio.sleep(0.5)
    assert zombie.alive(), zombie.log_text()  # fenced, not crashed
    zombie.signal(signal.SIGTERM)
    assert await zombie.wait_exit(15) == 0, zombie.log_text()
    assert "Traceback" not in zombie.log_text()
    assert rescuer.alive()
