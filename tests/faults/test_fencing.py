"""A zombie worker (SIGSTOP past its lease) cannot record anything once it wakes up (guarantee 3)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

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


# -- a zombie that writes while the rescuer still holds the run -----------------------------------
#
# The zombie's heartbeats go nowhere (FAULTS_DEAF), so when it wakes it believes it still holds
# the run and writes at once; the rescuer is blocked inside the run at that moment, so the run is
# `running` under the rescuer's lease. Only the lease token in the database's fence can refuse
# the zombie: `status = 'running'` alone would let both writes through.

REFUSED_STEP = "lease lost or run cancelled; dropping it"
REFUSED_OUTCOME = "lease lost or run cancelled; its outcome was not recorded"


async def take_over(faults: Faults, workflow: str, marker: str) -> tuple[str, Any, Any]:
    """Start ``workflow`` on a deaf zombie, freeze it where it blocks, let a rescuer take the
    run over and block at the same place; the run id and the two workers."""
    zombie = faults.start_worker("zombie", FAULTS_BLOCK=1, FAULTS_DEAF=1, FAULTS_POLL=0.2)
    run_id = await faults.client.start(workflow, {})
    await eventually(lambda: faults.pids(marker, run_id), 15, "the zombie to block")
    await faults.stop_quietly(zombie)
    rescuer = faults.start_worker("rescuer", FAULTS_BLOCK=1)
    await eventually(
        lambda: faults.pids(marker, run_id) == [zombie.pid, rescuer.pid], 15, "the take-over"
    )
    return run_id, zombie, rescuer


async def wake(faults: Faults, run_id: str, zombie: Any, refused: str) -> None:
    (faults.scratch / f"release-{run_id}-{zombie.pid}").touch()  # the zombie only
    zombie.signal(signal.SIGCONT)
    await eventually(lambda: refused in zombie.log_text(), 10, "the zombie's write to be refused")


async def test_a_zombie_step_is_refused_while_the_rescuer_holds_the_run(faults: Faults) -> None:
    run_id, zombie, rescuer = await take_over(faults, "blocker", "started")
    await wake(faults, run_id, zombie, REFUSED_STEP)
    assert zombie.pid in faults.pids("finished", run_id)  # its step ran, and it tried to record

    held = await faults.client.get_run(run_id)
    assert held.status == "running"  # still the rescuer's
    assert [s.key for s in held.steps] == []  # the zombie's "block" was not recorded

    (faults.scratch / f"release-{run_id}").touch()
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert {s.key: s.output for s in run.steps}["block"]["pid"] == rescuer.pid
    assert_steps_unique(run)
    assert zombie.alive() and rescuer.alive()


async def test_a_zombie_outcome_is_refused_while_the_rescuer_holds_the_run(
    faults: Faults,
) -> None:
    run_id, zombie, rescuer = await take_over(faults, "tail_blocker", "tail")
    await wake(faults, run_id, zombie, REFUSED_OUTCOME)

    held = await faults.client.get_run(run_id)
    assert (held.status, held.result, held.completed_at) == ("running", None, None)

    (faults.scratch / f"release-{run_id}").touch()
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.result["pid"] == rescuer.pid  # the rescuer's outcome, not the zombie's
    assert faults.calls(run_id) == {"a": 1}  # recorded by the zombie before it froze, replayed
    assert zombie.alive() and rescuer.alive()
