"""Workflow definitions and the triggers that start them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dataflows.budgets import Budget
from dataflows.errors import DuplicateWorkflow, UnknownWorkflow
from dataflows.limits import (
    IDEMPOTENCY_WINDOW,
    MAX_LIMIT,
    Concurrency,
    Debounce,
    KeyExpr,
    PriorityExpr,
    RateLimit,
    Throttle,
    key_value,
    priority_value,
)
from dataflows.models import Event
from dataflows.names import INTERNAL_PREFIX
from dataflows.records import FlowLimit, NewEvent, NewRun
from dataflows.retry import RetryPolicy

if TYPE_CHECKING:  # cron triggers import dataflows.schedules when they are checked or read
    from dataflows.schedules import CatchUp, CronSchedule


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Start a run for every event named ``name`` (a trailing ``*`` matches any suffix).

    In a workflow's ``cancel_on``, it cancels the workflow's runs instead: an event named
    ``name`` (exactly) whose ``match`` path (``"data.id"``) equals the run's triggering event's,
    as ``step.wait_for_event(..., match=...)`` compares them.
    """

    name: str
    match: str | None = None

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
        from dataflows.schedules import CronSchedule

        return CronSchedule(self.expr, self.tz)

    def check(self, workflow_id: str) -> None:
        """Raise ``ValueError`` naming the workflow and the option at fault."""
        from dataflows.schedules import CronSchedule, check_catch_up

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


def on_event(name: str, *, match: str | None = None) -> EventTrigger:
    """Trigger on events named ``name``; ``"shopify/*"`` matches every name with that prefix.

    ``match`` (a dotted path such as ``"data.id"``) is for ``cancel_on`` only: the cancelling
    event's value at that path must equal the run's triggering event's.
    """
    return EventTrigger(name, match)


def is_event_path(path: object) -> bool:
    """``data.field`` or ``data.a.b``: a dotted path into an event's data."""
    return (
        isinstance(path, str)
        and path.startswith("data.")
        and all(part and part.isprintable() for part in path.split(".")[1:])
    )


def check_cancel_on(workflow_id: str, cancel_on: object) -> tuple[EventTrigger, ...]:
    """A workflow's ``cancel_on``: a list of :func:`on_event` triggers with exact names and,
    if given, a dotted ``match`` path; ``ValueError`` naming the workflow and the option."""
    where = f"workflow {workflow_id!r}: cancel_on"
    if cancel_on is None:
        return ()
    if isinstance(cancel_on, EventTrigger):
        cancel_on = [cancel_on]
    if not isinstance(cancel_on, list | tuple):
        raise ValueError(f"{where} must be a list of df.on_event(...) triggers, not {cancel_on!r}")
    for trigger in cancel_on:
        if not isinstance(trigger, EventTrigger):
            raise ValueError(f"{where} must hold df.on_event(...) triggers, not {trigger!r}")
        if trigger.name.endswith("*") or trigger.name.startswith(INTERNAL_PREFIX):
            raise ValueError(f"{where}: {trigger.name!r} must be an exact event name")
        if trigger.match is not None and not is_event_path(trigger.match):
            raise ValueError(
                f"{where}: match={trigger.match!r} is not a dotted path such as 'data.id'"
            )
    return tuple(cancel_on)


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
    #: Events that cancel a run of this workflow (see :func:`check_cancel_on`).
    cancel_on: tuple[EventTrigger, ...] = ()
    #: At most this many runs execute at once (per key); ``None``: no limit.
    concurrency: Concurrency | None = None
    #: Which queued runs start first (higher first); ``None``: all 0.
    priority: PriorityExpr | None = None
    #: A run not started this many seconds after its creation is cancelled.
    start_timeout: float | None = None
    #: At most one run per value of this key within ``IDEMPOTENCY_WINDOW``.
    idempotency: KeyExpr | None = None
    #: At most ``limit`` runs created per key per period (seconds: ``rate_period``).
    rate_limit: RateLimit | None = None
    rate_period: float | None = None
    #: At most ``limit`` runs started per key per period (seconds: ``throttle_period``).
    throttle: Throttle | None = None
    throttle_period: float | None = None
    #: Collapses bursts of events per key into one run (seconds: ``debounce_periods``).
    debounce: Debounce | None = None
    debounce_periods: tuple[float, float | None] | None = None
    #: The version a run records when it starts: ``version=`` as given, else a fingerprint of
    #: the function's code (:func:`dataflows.versions.code_version`).
    version: str = ""

    def new_run(
        self,
        run_id: str,
        event: NewEvent,
        idempotency_key: str | None = None,
        parent_run_id: str | None = None,
        parent_step_key: str | None = None,
    ) -> NewRun:
        """A run of this workflow started by ``event``, its concurrency key and priority
        evaluated now (the store keeps them on the run)."""
        key: str | None = None
        priority = 0
        window = None
        rate_key = None
        debounce_key = None
        if (
            self.concurrency is not None
            or self.throttle is not None
            or self.debounce is not None
            or callable(self.priority)
            or self.idempotency
            or self.rate_limit is not None
        ):
            seen = Event(
                event.id,
                event.name,
                json.loads(event.data_json),
                datetime.fromtimestamp(event.ts, UTC),
            )
            if self.concurrency is not None:
                key = key_value(self.concurrency.key, seen)
            elif self.throttle is not None:
                # A throttled run is held by the claim as a limited one, by the same key.
                key = key_value(self.throttle.key, seen)
            priority = priority_value(self.priority, seen)
            if self.idempotency is not None and idempotency_key is None:
                idempotency_key = key_value(self.idempotency, seen)
                window = IDEMPOTENCY_WINDOW
            if self.rate_limit is not None:
                rate_key = key_value(self.rate_limit.key, seen)
            if self.debounce is not None:
                debounce_key = key_value(self.debounce.key, seen)
        elif self.priority is not None:
            priority = priority_value(self.priority, None)
        return NewRun(
            run_id,
            self.id,
            event,
            idempotency_key,
            parent_run_id,
            parent_step_key,
            concurrency_key=key,
            priority=priority,
            start_timeout=self.start_timeout,
            idempotency_window=window,
            rate_key=rate_key,
            rate_limit=None if self.rate_limit is None else self.rate_limit.limit,
            rate_period=self.rate_period,
            debounce_key=debounce_key,
            debounce_period=None if self.debounce_periods is None else self.debounce_periods[0],
            debounce_max_wait=None if self.debounce_periods is None else self.debounce_periods[1],
        )

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

    @property
    def start_timeouts(self) -> bool:
        """Whether a workflow here has a ``start_timeout`` (its workers cancel late runs)."""
        return any(w.start_timeout is not None for w in self._workflows.values())

    def flow_limits(self) -> list[FlowLimit]:
        """The concurrency limits and throttles of these workflows, as the store keeps them."""
        return [
            FlowLimit(
                w.id,
                MAX_LIMIT if w.concurrency is None else w.concurrency.limit,
                None if w.throttle is None else w.throttle.limit,
                w.throttle_period,
            )
            for w in self._workflows.values()
            if w.concurrency is not None or w.throttle is not None
        ]

    def triggered_by(self, event_name: str) -> list[Workflow]:
        return [
            w for w in self._workflows.values() if any(t.matches(event_name) for t in w.triggers)
        ]
