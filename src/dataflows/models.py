"""The public records: events, runs and their steps as the client API returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataflows.records import FINISHED_STATUSES, RunRow, StepRow, StoredEvent


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
class StepInfo:
    key: str
    kind: str
    status: str
    output: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    wake_at: datetime | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: StepRow) -> StepInfo:
        return cls(
            row.key,
            row.kind,
            row.status,
            row.output,
            row.error,
            row.attempts,
            _dt(row.started_at),
            _dt(row.completed_at),
            _dt(row.wake_at),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """A run of a workflow, as stored. ``status`` is one of queued, running, waiting, completed,
    failed, cancelled; ``wait_reason`` says what a waiting run waits for."""

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

    @property
    def done(self) -> bool:
        return self.status in FINISHED_STATUSES

    @classmethod
    def from_row(cls, row: RunRow) -> Run:
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
            steps=tuple(StepInfo.from_row(s) for s in row.steps),
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """What ``app.send`` returns: the event's id and the runs it started."""

    event_id: str
    run_ids: tuple[str, ...]
    duplicate: bool = False
