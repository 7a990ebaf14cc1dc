"""``step.invoke``: a child run, started once, whose result the parent waits for.

The child's id derives from the parent's run and step key, so a replay (or a second worker) finds
the same child instead of starting another. The parent waits for the child's
``dataflows/run.finished`` event like for any event, with the step's timeout as its deadline.
"""

from __future__ import annotations

import uuid
from typing import Any

from dataflows import metrics, tracing
from dataflows.errors import StepFailed
from dataflows.execution import Execution, retry_unavailable
from dataflows.intake import start_event
from dataflows.records import RUN_FINISHED_EVENT, StepRow, WaitMatch

_CHILD_IDS = uuid.UUID("6f1d6c1e-2b1a-4d8e-9a51-3c2f0b7d9e10")


def child_run_id(run_id: str, step_key: str) -> str:
    return uuid.uuid5(_CHILD_IDS, f"{run_id}:{step_key}").hex


async def invoke(x: Execution, key: str, workflow_id: str, data: Any, timeout: float | None) -> Any:
    """The child's result; :class:`StepFailed` if it failed or did not finish by ``timeout``."""
    row = x.recorded(key, "invoke")
    child_id = child_run_id(x.run.id, key)
    if row is not None and row.status == "completed":
        return _result(key, child_id, row.output)
    if row is None:
        await x.begin_new(key)  # before the child run is started
    else:
        x.pending(row)
    attributes = {"dataflows.child_run_id": child_id, "dataflows.child_workflow_id": workflow_id}
    span = tracing.step_span(x.trace, "step.invoke", key, attributes=attributes, links=[child_id])
    with span:
        return await _invoke(x, key, row, child_id, workflow_id, data, timeout)


async def _invoke(
    x: Execution,
    key: str,
    row: StepRow | None,
    child_id: str,
    workflow_id: str,
    data: Any,
    timeout: float | None,
) -> Any:
    if row is None:
        workflow = x.rt.registry.get(workflow_id)
        event = start_event(child_id, data, now=x.rt.clock.now(), limit=x.rt.max_payload)
        child = workflow.new_run(child_id, event, f"{x.run.id}:{key}", x.run.id, key)
        async with x.tracking():
            _, created = await retry_unavailable(
                lambda: x.rt.store.start_run(child, x.rt.clock.now())
            )
        if created:
            metrics.runs_started([workflow_id])
    deadline = None if timeout is None else x.rt.clock.now() + timeout
    if row is not None and row.status == "waiting":
        deadline = row.wake_at
    match = WaitMatch(RUN_FINISHED_EVENT, (("data.run_id", child_id),))
    return _result(key, child_id, await x.wait_step(key, match, deadline, kind="invoke"))


def _result(key: str, child_id: str, finished: dict[str, Any] | None) -> Any:
    if finished is None:
        raise StepFailed(key, "TimeoutError", f"child run {child_id} did not finish in time")
    info = finished["data"]
    if info["status"] != "completed":
        raise StepFailed.from_record(key, info.get("error"))
    return info.get("result")
