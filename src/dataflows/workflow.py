"""Workflow definitions and the triggers that start them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dataflows.budgets import Budget
from dataflows.errors import DuplicateWorkflow, UnknownWorkflow
from dataflows.models import Event
from dataflows.names import INTERNAL_PREFIX
from dataflows.retry import RetryPolicy
from dataflows.schedules import CatchUp, CronSchedule, check_catch_up


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Start a run for every event named ``name`` (a trailing ``*`` matches any suffix)."""

    name: str

    def __post_init__(self) -> None:
        if not self.name or "*" in self.name[:-1]:
            raise ValueError(f"invalid event trigger {self.name!r}: '*' may only end a name")

    def matches(self, event_name: str) -> bool:
        if event_name.startswith(INTERNAL_PREFIX):
            return False
        if self.name.endswith("*"):
            return event_name.startswith(self.name[:-1])
        return event_name == self.name


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Start a run at every tick of a cron expression (see :func:`cron`).

    Its runs start from the ``dataflows/cron`` event, which no other workflow sees: a cron
    trigger matches no event name.
    """

    expr: str
    tz: str = "UTC"
    catch_up: CatchUp = "latest"

    def __str__(self) -> str:
        return f"cron {self.expr} ({self.tz})"

    def matches(self, event_name: str) -> bool:
        return False

    def schedule(self) -> CronSchedule:
        return CronSchedule(self.expr, self.tz)

    def check(self, workflow_id: str) -> None:
        """Raise ``ValueError`` naming the workflow and the option at fault."""
        for option, value, checker in (
            ("expr", self.expr, lambda: CronSchedule(self.expr)),
            ("tz", self.tz, lambda: CronSchedule("* * * * *", self.tz)),
            ("catch_up", self.catch_up, lambda: check_catch_up(self.catch_up)),
        ):
            try:
                checker()
            except ValueError as exc:
                raise ValueError(
                    f"workflow {workflow_id!r}: cron {option}={value!r} is invalid: {exc}"
                ) from None


Trigger = EventTrigger | CronTrigger


def on_event(name: str) -> EventTrigger:
    """Trigger on events named ``name``; ``"shopify/*"`` matches every name with that prefix."""
    return EventTrigger(name)


def cron(expr: str, *, tz: str = "UTC", catch_up: CatchUp = "latest") -> CronTrigger:
    """Trigger a run at every tick of ``expr``: five fields (minute hour day-of-month month
    day-of-week) or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, read in
    the IANA time zone ``tz``. Each tick starts one run, however many workers run, with the
    event ``dataflows/cron`` whose data is ``{"scheduled_at": <ISO 8601 time in tz>}``.

    ``catch_up`` says what happens to ticks missed while no worker ran: ``"latest"`` runs the
    latest of them once, ``"none"`` skips them, ``"all"`` runs each. The expression, zone and
    mode are checked when the workflow is registered (``ValueError`` naming both).
    """
    return CronTrigger(expr, tz, catch_up)


def schedule_id(workflow_id: str, index: int) -> str:
    """The id of a workflow's ``index``-th cron trigger (from 0): ``nightly-report:0``."""
    return f"{workflow_id}:{index}"


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    #: ``async def (event, step)``; the step is a :class:`dataflows.step.Step`, which runs on
    #: top of these definitions (``dataflows.step.WorkflowFn`` is the precise type).
    fn: Callable[[Event, Any], Awaitable[Any]]
    triggers: tuple[Trigger, ...]
    retry: RetryPolicy
    timeout: float | None
    #: Event data the workflow accepts, for people and tools (``dataflows dev`` shows a request
    #: that starts the workflow with it); the engine never uses it.
    example: dict[str, Any] | None = None

    def schedules(self) -> list[tuple[str, CronTrigger]]:
        """``(schedule id, trigger)`` of each cron trigger, in order."""
        crons = [t for t in self.triggers if isinstance(t, CronTrigger)]
        return [(schedule_id(self.id, n), t) for n, t in enumerate(crons)]


class Registry:
    """The workflows of one app, by id, and its shared step budgets, by name."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        #: ``app.rate_limit`` declarations, which ``step.run(..., rate_limit=name)`` names.
        self.budgets: dict[str, Budget] = {}

    def add_budget(self, budget: Budget) -> None:
        if budget.name in self.budgets:
            raise ValueError(f"rate_limit {budget.name!r} is declared twice")
        self.budgets[budget.name] = budget

    def add(self, workflow: Workflow) -> None:
        if workflow.id in self._workflows:
            raise DuplicateWorkflow(workflow.id)
        self._workflows[workflow.id] = workflow

    def get(self, workflow_id: str) -> Workflow:
        try:
            return self._workflows[workflow_id]
        except KeyError:
            raise UnknownWorkflow(workflow_id) from None

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._workflows

    def __iter__(self) -> Any:
        return iter(self._workflows.values())

    def triggered_by(self, event_name: str) -> list[Workflow]:
        return [
            w for w in self._workflows.values() if any(t.matches(event_name) for t in w.triggers)
        ]
