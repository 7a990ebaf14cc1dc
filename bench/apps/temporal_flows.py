"""Temporal workflows and activities of the benchmark (imported into Temporal's sandbox).

A step is a regular activity (``workflow.execute_activity``): the server records it in the
workflow's history and hands it to a worker through its task queue, the durable equivalent of a
dataflows step. ``local=True`` runs local activities instead (executed in the worker that runs the
workflow; their results are recorded with the next workflow task completion).
"""

from __future__ import annotations

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
    async def run(self, i: int) -> None:
        with workflow.unsafe.sandbox_unrestricted():
            marks.READY.add(workflow.info().workflow_id)
        await workflow.wait_condition(lambda: self.go)
        with workflow.unsafe.sandbox_unrestricted():
            marks.resumed(i)
            marks.DONE.add(workflow.info().workflow_id)


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, i: int) -> None:
        with workflow.unsafe.sandbox_unrestricted():
            marks.sleep_started(i, 1.0)
        await workflow.sleep(1.0)
        with workflow.unsafe.sandbox_unrestricted():
            marks.woke(i)


WORKFLOWS = [Steps, Waiter, Sleeper]
#: The SDK's default sandbox, with the timestamps' module shared with the measuring process.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("bench.marks")
)
ACTIVITIES = [noop]
