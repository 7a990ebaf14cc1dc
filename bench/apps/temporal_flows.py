"""Temporal workflows and activities of the benchmark (imported into Temporal's sandbox).

A step is a regular activity (``workflow.execute_activity``): the server records it in the
workflow's history and hands it to a worker through its task queue, the durable equivalent of a
dataflows step. ``local=True`` runs local activities instead (executed in the worker that runs the
workflow; their results are recorded with the next workflow task completion).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from bench import marks

TIMEOUT = timedelta(seconds=60)


@activity.defn
async def noop(i: int) -> int:
    return i


@workflow.defn
class Steps:
    @workflow.run
    async def run(self, steps: int, local: bool) -> int:
        for i in range(steps):
            if local:
                await workflow.execute_local_activity(noop, i, start_to_close_timeout=TIMEOUT)
            else:
                await workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT)
        return steps


@workflow.defn
class Waiter:
    """Waits for the ``release`` signal."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def release(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, i: int) -> float:
        """Returns when it went on (time.time(), read outside the sandbox: the event_remote
        measure compares it with the sender's clock in another process)."""
        with workflow.unsafe.sandbox_unrestricted():
            marks.READY.add(workflow.info().workflow_id)
        await workflow.wait_condition(lambda: self.go)
        with workflow.unsafe.sandbox_unrestricted():
            resumed_at = time.time()
            marks.resumed(i)
            marks.DONE.add(workflow.info().workflow_id)
        return resumed_at


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, i: int) -> None:
        with workflow.unsafe.sandbox_unrestricted():
            marks.sleep_started(i, 1.0)
        await workflow.sleep(1.0)
        with workflow.unsafe.sandbox_unrestricted():
            marks.woke(i)


#: The failover measure's activity heartbeat timeout: how long the server waits for a killed
#: worker's heartbeat before it retries the activity elsewhere (after the default retry policy's
#: 1 s first back-off).
HEARTBEAT_TIMEOUT = timedelta(seconds=2)


@activity.defn
async def hold(marker: str) -> dict[str, float]:
    """The first attempt writes ``marker`` (this pid) and heartbeats until its worker is killed;
    a later attempt (on another worker) returns at once with the time it began."""
    began = time.time()
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return {"resumed_at": began, "pid": os.getpid()}
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    for _ in range(1200):  # until killed
        activity.heartbeat()
        await asyncio.sleep(0.1)
    return {"resumed_at": 0.0, "pid": os.getpid()}


@workflow.defn
class Failover:
    @workflow.run
    async def run(self, marker: str) -> dict[str, float]:
        result: dict[str, float] = await workflow.execute_activity(
            hold,
            marker,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )
        return result


WORKFLOWS = [Steps, Waiter, Sleeper, Failover]
#: The SDK's default sandbox, with the timestamps' module shared with the measuring process.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("bench.marks")
)
ACTIVITIES = [noop, hold]
