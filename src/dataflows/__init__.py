"""dataflows: durable execution for Python on PostgreSQL and SQLite.

Write a plain async function; every ``await step.run("name", fn)`` is a memoized step whose result
is committed before the next line runs, so a crashed run resumes where it stopped.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataflows.app import Dataflows
    from dataflows.approvals import Approval, ApprovalRequest, MissingSetting
    from dataflows.clock import Clock, ManualClock, SystemClock
    from dataflows.context import StepContext, current_step
    from dataflows.errors import (
        DataflowsError,
        DuplicateWorkflow,
        InvalidDuration,
        InvalidRunState,
        InvalidStepName,
        NonDeterminismError,
        PayloadError,
        PayloadTooLarge,
        RunFailed,
        RunNotFound,
        ScheduleNotFound,
        StepFailed,
        StoreUnavailable,
        UnknownWorkflow,
    )
    from dataflows.limits import Concurrency, Debounce, RateLimit, Throttle
    from dataflows.models import AttemptError, Event, Run, Schedule, SendResult, StepInfo
    from dataflows.retry import NonRetriableError, RetryAfterError, RetryPolicy
    from dataflows.step import Step
    from dataflows.workflow import CronTrigger, EventTrigger, Trigger, cron, on_event

#: Where each public name lives. ``import dataflows`` loads none of them, so ``dataflows --help``
#: and ``--version`` answer without importing the engine; the first use of a name imports its module.
_EXPORTS: dict[str, str] = {
    "Dataflows": "dataflows.app",
    **dict.fromkeys(("Approval", "ApprovalRequest", "MissingSetting"), "dataflows.approvals"),
    **dict.fromkeys(("Clock", "ManualClock", "SystemClock"), "dataflows.clock"),
    **dict.fromkeys(("StepContext", "current_step"), "dataflows.context"),
    **dict.fromkeys(
        (
            "DataflowsError",
            "DuplicateWorkflow",
            "InvalidDuration",
            "InvalidRunState",
            "InvalidStepName",
            "NonDeterminismError",
            "PayloadError",
            "PayloadTooLarge",
            "RunFailed",
            "RunNotFound",
            "ScheduleNotFound",
            "StepFailed",
            "StoreUnavailable",
            "UnknownWorkflow",
        ),
        "dataflows.errors",
    ),
    **dict.fromkeys(("Concurrency", "Debounce", "RateLimit", "Throttle"), "dataflows.limits"),
    **dict.fromkeys(
        ("AttemptError", "Event", "Run", "Schedule", "SendResult", "StepInfo"), "dataflows.models"
    ),
    **dict.fromkeys(("NonRetriableError", "RetryAfterError", "RetryPolicy"), "dataflows.retry"),
    "Step": "dataflows.step",
    **dict.fromkeys(
        ("CronTrigger", "EventTrigger", "Trigger", "cron", "on_event"), "dataflows.workflow"
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dataflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


#: The version of the dataflows-engine distribution; the build reads it from here.
__version__ = "0.1.0"

__all__ = [
    "Approval",
    "ApprovalRequest",
    "AttemptError",
    "Clock",
    "Concurrency",
    "CronTrigger",
    "Dataflows",
    "DataflowsError",
    "Debounce",
    "DuplicateWorkflow",
    "Event",
    "EventTrigger",
    "InvalidDuration",
    "InvalidRunState",
    "InvalidStepName",
    "ManualClock",
    "MissingSetting",
    "NonDeterminismError",
    "NonRetriableError",
    "PayloadError",
    "PayloadTooLarge",
    "RateLimit",
    "RetryAfterError",
    "RetryPolicy",
    "Run",
    "RunFailed",
    "RunNotFound",
    "Schedule",
    "ScheduleNotFound",
    "SendResult",
    "Step",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StoreUnavailable",
    "SystemClock",
    "Throttle",
    "Trigger",
    "UnknownWorkflow",
    "cron",
    "current_step",
    "on_event",
]
