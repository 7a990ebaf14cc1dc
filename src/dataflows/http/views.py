"""How runs, steps and workflows look in the API's JSON. Times are RFC 3339 strings in UTC."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from dataflows.models import AttemptError, Run, Schedule, StepInfo
from dataflows.workflow import CronTrigger, EventTrigger, Trigger, Workflow

__all__ = [
    "attempt_error_view",
    "run_detail",
    "run_summary",
    "schedule_view",
    "step_view",
    "workflow_view",
]

_REPEAT_SUFFIX = re.compile(r"#[0-9]+$")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def run_summary(run: Run) -> dict[str, Any]:
    """A run as listed: everything but its data, result and steps."""
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "wait_reason": run.wait_reason,
        "event": {"id": run.event.id, "name": run.event.name, "ts": _time(run.event.ts)},
        "error": run.error,
        "created_at": _time(run.created_at),
        "updated_at": _time(run.updated_at),
        "completed_at": _time(run.completed_at),
        "wake_at": _time(run.wake_at),
        "recoveries": run.recoveries,
        "parent_run_id": run.parent_run_id,
        "version": run.version,
    }


def run_detail(run: Run) -> dict[str, Any]:
    """A run with its triggering event's data, its result and its steps in recording order."""
    view = run_summary(run)
    view["event"]["data"] = run.event.data
    view["result"] = run.result
    view["steps"] = [step_view(step) for step in run.steps]
    return view


def step_view(step: StepInfo) -> dict[str, Any]:
    return {
        "key": step.key,
        # The name given in code: a repeated name is keyed "name#2", "name#3" ...
        "name": _REPEAT_SUFFIX.sub("", step.key),
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "output": step.output,
        "error": step.error,
        "started_at": _time(step.started_at),
        "completed_at": _time(step.completed_at),
        "wake_at": _time(step.wake_at),
        "duration_seconds": step.duration,
        "attempt_errors": [attempt_error_view(a) for a in step.attempt_errors],
    }


def attempt_error_view(attempt: AttemptError) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "error": attempt.error,
        "started_at": _time(attempt.started_at),
        "failed_at": _time(attempt.failed_at),
        "retry_at": _time(attempt.retry_at),
    }


def workflow_view(workflow: Workflow) -> dict[str, Any]:
    policy = workflow.retry
    return {
        "id": workflow.id,
        "triggers": [trigger_view(t) for t in workflow.triggers],
        "retries": {
            "retries": policy.retries,
            "initial_seconds": policy.initial,
            "factor": policy.factor,
            "maximum_seconds": policy.maximum,
            "jitter": policy.jitter,
        },
        "timeout_seconds": workflow.timeout,
        "version": workflow.version,
        "cancel_on": [cancel_view(t) for t in workflow.cancel_on],
        **flow_control_view(workflow),
    }


def flow_control_view(workflow: Workflow) -> dict[str, Any]:
    """The workflow's flow-control options, each ``null`` when unset. Periods are in seconds; a
    key, the idempotency key and the priority show a function as ``{"callable": "module.qualname"}``
    and a dotted path (or the constant priority) as it is; a ``null`` key means the whole
    workflow."""
    concurrency = workflow.concurrency
    throttle = workflow.throttle
    rate_limit = workflow.rate_limit
    debounce = workflow.debounce
    debounce_periods = workflow.debounce_periods or (None, None)
    return {
        "concurrency": None
        if concurrency is None
        else {"limit": concurrency.limit, "key": expr_view(concurrency.key)},
        "throttle": None
        if throttle is None
        else {
            "limit": throttle.limit,
            "period_seconds": workflow.throttle_period,
            "key": expr_view(throttle.key),
        },
        "rate_limit": None
        if rate_limit is None
        else {
            "limit": rate_limit.limit,
            "period_seconds": workflow.rate_period,
            "key": expr_view(rate_limit.key),
        },
        "debounce": None
        if debounce is None
        else {
            "period_seconds": debounce_periods[0],
            "key": expr_view(debounce.key),
            "max_wait_seconds": debounce_periods[1],
        },
        "priority": expr_view(workflow.priority),
        "idempotency": expr_view(workflow.idempotency),
        "start_timeout_seconds": workflow.start_timeout,
    }


def expr_view(expr: object) -> Any:
    """A key (or priority) as shown: ``None``, a path or a number as it is, a function as
    ``{"callable": "module.qualname"}``."""
    if callable(expr):
        return {"callable": callable_name(expr)}
    return expr


def callable_name(fn: object) -> str:
    """``module.qualname`` of a function (``myapp.flows.<lambda>`` for a lambda); for another
    callable object (a ``functools.partial``, an instance with ``__call__``), of its class."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        module, qualname = type(fn).__module__, type(fn).__qualname__
    return f"{module}.{qualname}"


def cancel_view(trigger: EventTrigger) -> dict[str, Any]:
    """A ``cancel_on`` trigger: the event that cancels a run, and the path whose value must
    equal the run's triggering event's (``null``: every run of the workflow)."""
    return {"type": "event", "event": trigger.name, "match": trigger.match}


def trigger_view(trigger: Trigger) -> dict[str, Any]:
    if isinstance(trigger, EventTrigger):
        return {"type": "event", "event": trigger.name}
    if isinstance(trigger, CronTrigger):
        return {
            "type": "cron",
            "expr": trigger.expr,
            "tz": trigger.tz,
            "catch_up": trigger.catch_up,
        }
    # Trigger kinds added later (cron ...) show their fields under their class name.
    kind = type(trigger).__name__.removesuffix("Trigger").lower()
    fields = dataclasses.asdict(trigger) if dataclasses.is_dataclass(trigger) else {}
    return {"type": kind, **fields}


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "workflow_id": schedule.workflow_id,
        "expr": schedule.expr,
        "tz": schedule.tz,
        "catch_up": schedule.catch_up,
        "next_at": _time(schedule.next_at),
        "paused": schedule.paused,
    }
