"""The public records: events, runs and their steps as the client API returns them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataflows.durations import format_duration
from dataflows.records import (
    ENGINE_KINDS,
    FINISHED_STATUSES,
    AttemptRow,
    RunRow,
    ScheduleRow,
    StepRow,
    StoredEvent,
)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """An event: what triggers runs and what ``step.wait_for_event`` returns. Immutable."""

    id: str
    name: str
    data: dict[str, Any]
    ts: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _freeze(self.data))

    @classmethod
    def from_stored(cls, event: StoredEvent) -> Event:
        return cls(event.id, event.name, event.data, datetime.fromtimestamp(event.ts, UTC))

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Event:
        return cls(
            value["id"], value["name"], value["data"], datetime.fromtimestamp(value["ts"], UTC)
        )


class _FrozenDict(dict[str, Any]):
    """A dict that refuses changes, so an event's data cannot drift between replays."""

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("event data is immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return _FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt of a step: its number (from 1), its ``error`` (``type``, ``message``,
    ``traceback``), when it started and failed, and ``retry_at``, when the next attempt could
    start (``None`` for the attempt that failed the step for good)."""

    attempt: int
    error: dict[str, Any]
    started_at: datetime | None
    failed_at: datetime | None
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A step of a run. ``status`` is ``completed``, ``failed``, ``retrying`` (failed attempts,
    the next one at ``wake_at``), ``waiting`` (a sleep or wait not yet resolved) or ``timed_out``
    (a ``wait_for_event`` or ``invoke`` whose timeout passed first: the workflow got ``None``).
    ``attempt_errors`` lists every failed attempt, oldest first."""

    key: str
    kind: str
    status: str
    output: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    wake_at: datetime | None
    attempt_errors: tuple[AttemptError, ...] = ()

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: StepRow, attempts: Sequence[AttemptRow] = ()) -> StepInfo:
        """The step as shown, given its failed attempts that were retried (``attempts``)."""
        return cls(
            row.key,
            row.kind,
            _shown_status(row),
            row.output,
            row.error,
            row.attempts,
            _dt(row.started_at),
            _dt(row.completed_at),
            _dt(row.wake_at),
            _attempt_errors(row, attempts),
        )


def _shown_status(row: StepRow) -> str:
    # A wait resolved without an event timed out. It is stored as completed, with no event and
    # a null output: that is what its replay returns.
    if row.kind in ("wait", "invoke") and row.status == "completed" and row.event_id is None:
        return "timed_out"
    return row.status


def _attempt_errors(row: StepRow, attempts: Sequence[AttemptRow]) -> tuple[AttemptError, ...]:
    errors = [
        AttemptError(a.attempt, a.error, _dt(a.started_at), _dt(a.failed_at), _dt(a.retry_at))
        for a in attempts
    ]
    if row.status == "failed" and row.error is not None:
        # The attempt that failed the step for good is the step's own outcome, not a retry.
        last = AttemptError(
            row.attempts, row.error, _dt(row.started_at), _dt(row.completed_at), None
        )
        errors.append(last)
    return tuple(errors)


@dataclass(frozen=True, slots=True)
class Run:
    """A run of a workflow, as stored. ``status`` is one of queued, running, waiting, completed,
    failed, cancelled; ``wait_reason`` says what a waiting run waits for, or which limit holds a
    queued run back (``concurrency sync-order/42``)."""

    id: str
    workflow_id: str
    status: str
    event: Event
    result: Any
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    wake_at: datetime | None
    wait_reason: str | None
    recoveries: int
    parent_run_id: str | None
    steps: tuple[StepInfo, ...] = field(default=())
    #: The version of the code the run started with (``app.workflow(..., version=)`` or a
    #: fingerprint of the function's code); ``None`` until its first attempt.
    version: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __str__(self) -> str:
        """The run for a person: ``print(run)`` shows its outcome and step timeline."""
        return self.timeline()

    def timeline(self) -> str:
        """A few lines of plain text: status, result or error, and every step with its start
        offset from the run's creation, kind, status, attempts, duration and a short detail."""
        status = self.status
        if self.completed_at is not None:
            took = (self.completed_at - self.created_at).total_seconds()
            status += f" in {format_duration(took)}"
        elif self.status in ("waiting", "queued") and self.wait_reason:
            status += f" ({self.wait_reason})"
        lines = [f"run {self.id} of {self.workflow_id}: {status}"]
        if self.status == "completed":
            lines.append(f"  result: {_short_json(self.result, 1000)}")
        if self.error:
            lines.append(f"  error: {error_line(self.error)}")
        for step in self.steps:
            lines.append("  " + _step_line(step, self.created_at))
            lines += [
                f"{'':13}attempt {failed.attempt} failed: {error_line(failed.error)}"
                for failed in step.attempt_errors
                if failed.retry_at is not None  # the final one is on the step's own line
            ]
        return "\n".join(lines)

    @classmethod
    def from_row(cls, row: RunRow) -> Run:
        by_step: dict[str, list[AttemptRow]] = {}
        for attempt in row.attempts:
            by_step.setdefault(attempt.key, []).append(attempt)
        return cls(
            id=row.id,
            workflow_id=row.workflow_id,
            status=row.status,
            event=Event.from_stored(row.event),
            result=row.result,
            error=row.error,
            created_at=datetime.fromtimestamp(row.created_at, UTC),
            updated_at=datetime.fromtimestamp(row.updated_at, UTC),
            completed_at=_dt(row.completed_at),
            wake_at=_dt(row.wake_at),
            wait_reason=row.wait_reason,
            recoveries=row.recoveries,
            parent_run_id=row.parent_run_id,
            version=row.version,
            # A cancel_on watch or a step.patched marker is the engine's, not a step of the
            # code: not shown.
            steps=tuple(
                StepInfo.from_row(s, by_step.get(s.key, ()))
                for s in row.steps
                if s.kind not in ENGINE_KINDS
            ),
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """What ``app.send`` returns: the event's id, the runs it started, and the runs whose
    ``wait_for_event`` it resolved (``resumed_run_ids``).

    A ``duplicate`` (an id already stored) writes nothing: ``run_ids`` are the runs the first
    delivery started and ``resumed_run_ids`` is empty.
    """

    event_id: str
    run_ids: tuple[str, ...]
    duplicate: bool = False
    resumed_run_ids: tuple[str, ...] = ()
    #: Workflows the event triggers whose run it did not start, each ``(workflow id, why)``:
    #: ``idempotency KEY`` when a run with that idempotency key was started within the window.
    skipped: tuple[tuple[str, str], ...] = ()


def _step_line(step: StepInfo, origin: datetime) -> str:
    start = (
        ""
        if step.started_at is None
        else "+" + format_duration(max(0.0, (step.started_at - origin).total_seconds()))
    )
    took = "" if step.duration is None else format_duration(step.duration)
    attempts = ""
    if step.kind == "run" and step.attempts:
        attempts = f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}"
    return f"{start:>9}  {step.key:<16} {step.kind:<6} {step.status:<10} {attempts:<10} {took:>9}  {_step_detail(step)}".rstrip()


def _step_detail(step: StepInfo) -> str:
    if step.error:
        return error_line(step.error)
    output = step.output
    if step.kind == "wait" and isinstance(output, dict) and "name" in output:
        return f"event {output['name']} ({output.get('id', '')})"
    if step.kind in ("run", "invoke") and step.status == "completed" and output is not None:
        return _short_json(output, 60)
    return ""


def error_line(error: dict[str, Any] | None) -> str:
    """``Type: first line of the message`` of a stored error, for one line of text or log."""
    error = error or {}
    kind = str(error.get("type", "Error"))
    lines = str(error.get("message", "")).strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind


def _short_json(value: Any, width: int) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron trigger as workers keep it: ``next_at`` is when it fires next (``None`` while
    paused); ``id`` is ``<workflow id>:<n>``, the workflow's n-th cron trigger from 0."""

    id: str
    workflow_id: str
    expr: str
    tz: str
    catch_up: str
    next_at: datetime | None
    paused: bool

    @classmethod
    def from_row(cls, row: ScheduleRow) -> Schedule:
        next_at = None if row.paused else _dt(row.next_at)
        return cls(row.id, row.workflow_id, row.expr, row.tz, row.catch_up, next_at, row.paused)
