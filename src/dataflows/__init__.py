"""dataflows: durable execution for Python on PostgreSQL and SQLite.

Write a plain async function; every ``await step.run("name", fn)`` is a memoized step whose result
is committed before the next line runs, so a crashed run resumes where it stopped.
"""

from dataflows.app import Dataflows
from dataflows.clock import Clock, ManualClock, SystemClock
from dataflows.context import StepContext, current_step
from dataflows.errors import (
    DataflowsError,
    DuplicateWorkflow,
    InvalidDuration,
    InvalidRunState,
    InvalidStepName,
    NonDeterminismError,
    NonRetriableError,
    PayloadError,
    PayloadTooLarge,
    RetryAfterError,
    RunFailed,
    RunNotFound,
    StepFailed,
    StoreUnavailable,
    UnknownWorkflow,
)
from dataflows.models import AttemptError, Event, Run, SendResult, StepInfo
from dataflows.retry import RetryPolicy
from dataflows.step import Step
from dataflows.workflow import EventTrigger, Trigger, on_event

__version__ = "0.1.0"

__all__ = [
    "AttemptError",
    "Clock",
    "Dataflows",
    "DataflowsError",
    "DuplicateWorkflow",
    "Event",
    "EventTrigger",
    "InvalidDuration",
    "InvalidRunState",
    "InvalidStepName",
    "ManualClock",
    "NonDeterminismError",
    "NonRetriableError",
    "PayloadError",
    "PayloadTooLarge",
    "RetryAfterError",
    "RetryPolicy",
    "Run",
    "RunFailed",
    "RunNotFound",
    "SendResult",
    "Step",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StoreUnavailable",
    "SystemClock",
    "Trigger",
    "UnknownWorkflow",
    "current_step",
    "on_event",
]
