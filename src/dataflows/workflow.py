"""Workflow definitions and the triggers that start them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dataflows.errors import DuplicateWorkflow, UnknownWorkflow
from dataflows.models import Event
from dataflows.names import INTERNAL_PREFIX
from dataflows.retry import RetryPolicy


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


Trigger = EventTrigger


def on_event(name: str) -> EventTrigger:
    """Trigger on events named ``name``; ``"shopify/*"`` matches every name with that prefix."""
    return EventTrigger(name)


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


class Registry:
    """The workflows of one app, by id."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}

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
