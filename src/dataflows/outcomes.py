"""A run's outcome, written once: its result or its error, fenced by the lease that ran it.

A worker that lost its lease meanwhile (paused, partitioned, its run cancelled) writes nothing:
the store refuses the write, and the worker says so in its log. An outcome that lands is
counted, and a failed run is logged with its error, one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from dataflows import metrics, serialization
from dataflows.clock import Clock
from dataflows.context import log_fields
from dataflows.errors import PayloadError
from dataflows.execution import error_json, retry_unavailable
from dataflows.models import error_line
from dataflows.records import ClaimedRun
from dataflows.store.base import Store

__all__ = ["complete", "fail", "poison_error"]

log = logging.getLogger("dataflows.worker")


async def complete(
    store: Store, clock: Clock, run: ClaimedRun, result: object, max_payload: int
) -> PayloadError | None:
    """Record ``result`` as the run's; a result that cannot be stored fails the run instead,
    and is returned (the error the run failed with)."""
    try:
        text = serialization.dumps(result, what="the workflow's result", limit=max_payload)
    except PayloadError as exc:
        await fail(store, clock, run, error_json(exc))
        return exc
    await _finish(store, clock, run, "completed", store.complete_run, text)
    return None


async def fail(store: Store, clock: Clock, run: ClaimedRun, error: str) -> None:
    """Record ``error`` (JSON text: type, message, traceback …) as the run's."""
    await _finish(store, clock, run, "failed", store.fail_run, error)


async def _finish(
    store: Store,
    clock: Clock,
    run: ClaimedRun,
    status: str,
    finish: Callable[..., Awaitable[bool]],
    payload: str,
) -> None:
    if await retry_unavailable(
        lambda: finish(run.lease, payload, clock.now(), has_parent=run.parent_run_id is not None)
    ):
        metrics.run_finished(run.workflow_id, status)
        if status == "failed":
            _log_failed(run, json.loads(payload))
    else:  # fenced: the run was taken over (or cancelled) while this worker held it
        log.info("run %s: lease lost or run cancelled; its outcome was not recorded", run.id)


def poison_error(run: ClaimedRun) -> str:
    """The error of a run whose worker was lost too many times while running it."""
    message = (
        f"the run's worker was lost {run.recoveries} times while running it (crash, OOM or "
        "os._exit); quarantined instead of retried again"
    )
    return json.dumps({"type": "PoisonRun", "message": message, "recoveries": run.recoveries})


def _log_failed(run: ClaimedRun, error: dict[str, object]) -> None:
    step_key = str(error["step"]) if error.get("step") else None
    step = f" (in step {step_key})" if step_key else ""
    line = error_line(error)
    log.error(
        "run failed: workflow=%s run=%s error=%s%s",
        run.workflow_id,
        run.id,
        line,
        step,
        extra=log_fields(run.id, run.workflow_id, step_key, error=line),
    )
