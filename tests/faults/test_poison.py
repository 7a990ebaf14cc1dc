"""A run that kills its worker on every attempt is quarantined, not looped on (guarantee 8)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.faults.conftest import Faults, WorkerProcess, eventually

pytestmark = pytest.mark.crash

MAX_RECOVERIES = 2


async def test_poison_run_is_quarantined(faults: Faults) -> None:
    run_id = await faults.client.start("poison", {})
    deaths: list[int] = []
    survivor: WorkerProcess | None = None

    async def run_failed() -> bool:
        return (await faults.client.get_run(run_id)).status == "failed"

    # A supervisor: start a worker, restart it whenever it dies, until the run has failed.
    for attempt in range(MAX_RECOVERIES + 4):
        worker = faults.start_worker(f"w{attempt}", FAULTS_MAX_RECOVERIES=MAX_RECOVERIES)

        async def died_or_failed(worker: WorkerProcess = worker) -> bool:
            return not worker.alive() or await run_failed()

        await eventually(died_or_failed, 15, "the worker to die or the run to fail")
        if worker.alive():
            survivor = worker
            break
        deaths.append(worker.popen.returncode or 0)

    assert survivor is not None, f"the worker kept dying: {deaths}"
    assert deaths == [1] * (MAX_RECOVERIES + 1)
    run = await faults.client.get_run(run_id)
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "PoisonRun", run.error
    assert run.error["recoveries"] == MAX_RECOVERIES + 1
    assert run.recoveries == MAX_RECOVERIES + 1
    assert faults.calls(run_id) == {"boom": MAX_RECOVERIES + 1}
    assert [s.key for s in run.steps] == []  # the step never got a result

    # The surviving worker stays up and still does work.
    await asyncio.sleep(0.5)
    assert survivor.alive()
    healthy = await faults.client.start("crashy", {"n": 1})
    done = await faults.wait_done(healthy)
    assert done.status == "completed", done.error
    assert done.result["c"]["pid"] == survivor.pid
    assert faults.calls(run_id) == {"boom": MAX_RECOVERIES + 1}
    survivor.signal(signal.SIGTERM)
    assert await survivor.wait_exit(15) == 0, survivor.log_text()
