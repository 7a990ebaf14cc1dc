"""Plain records that cross the store boundary.

The store speaks in these; it knows nothing of workflows, steps objects or the worker. Times are
seconds since the epoch (floats) handed in by the engine's clock. ``*_json`` fields are JSON text
already validated by :mod:`dataflows.serialization`; fields without the suffix are decoded values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RUN_STATUSES: tuple[str, ...] = ("queued", "running", "waiting", "completed", "failed", "cancelled")
#: The statuses a run ends in.
FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})
#: The statuses a step is shown with (``timed_out``: a wait whose deadline passed first).
STEP_STATUSES: tuple[str, ...] = ("completed", "failed", "retrying", "waiting", "timed_out")

StepKind = Literal["run", "sleep", "wait", "send", "invoke", "patch"]

#: Kinds of history rows that are the engine's, not steps of the code: a ``cancel_on`` watch
#: and a ``step.patched`` marker. They are never shown and never "unreached" in a replay.
ENGINE_KINDS = frozenset({"cancel", "patch"})

#: Internal event a run emits when it finishes and has a parent; ``step.invoke`` waits on it.
RUN_FINISHED_EVENT = "dataflows/run.finished"


# NewEvent and NewRun are built once per event and per run started (app.start's hot path) and
# never changed afterwards; they are not frozen only because a frozen dataclass's __init__ costs
# about nine times a plain one's (one object.__setattr__ per field).


@dataclass(slots=True)
class NewEvent:
    id: str
    name: str
    data_json: str
    ts: float


@dataclass(slots=True)
class NewRun:
    id: str
    workflow_id: str
    event: NewEvent
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    #: The run's concurrency key (``None``: its workflow has no concurrency limit).
    concurrency_key: str | None = None
    #: Queued runs start by priority (higher first), then age.
    priority: int = 0
    #: Seconds after its creation by which the run must have started, else it is cancelled.
    start_timeout: float | None = None
    #: How long ``idempotency_key`` holds (``None``: as long as the run is kept). An older run
    #: with the key gives it up when this one is created.
    idempotency_window: float | None = None
    #: Rate limit: at most ``rate_limit`` runs per ``rate_key`` created within ``rate_period``
    #: seconds; a run over it is not created (event intake only).
    rate_key: str | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    #: Debounce (event intake only): a run of the workflow with this key created and not yet
    #: started takes this run's event instead, and starts ``debounce_period`` seconds later
    #: (at most ``debounce_max_wait`` after it was created); else this run starts that late.
    debounce_key: str | None = None
    debounce_period: float | None = None
    debounce_max_wait: float | None = None


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """A workflow's concurrency limit and throttle as the code defines them, for
    :meth:`Store.sync_flow_limits` (a throttle alone has the concurrency ``MAX_LIMIT``)."""

    workflow_id: str
    concurrency: int
    #: At most ``throttle`` runs per key first claimed within ``throttle_period`` seconds.
    throttle: int | None = None
    throttle_period: float | None = None


@dataclass(frozen=True, slots=True)
class BodyKey:
    """A webhook body whose signature does not cover its delivery id: the same ``digest``
    (SHA-256 of the raw body, hex) sent to ``source`` again within ``window`` seconds of the
    first is a duplicate of the first delivery's event, whatever delivery id it came with."""

    source: str
    digest: str
    window: float


@dataclass(frozen=True, slots=True)
class EventIntake:
    """One event to store and the runs it starts (created only if the event id is new, and,
    with a ``body`` key, only if that body was not seen within its window)."""

    event: NewEvent
    runs: tuple[NewRun, ...] = ()
    body: BodyKey | None = None


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """An event stored, or found a duplicate: the runs it started (a duplicate's: the first
    delivery's) and the runs whose waits it resolved (a duplicate resolves none)."""

    event_id: str
    run_ids: tuple[str, ...]
    duplicate: bool
    resumed_run_ids: tuple[str, ...] = ()
    #: The runs it did not start, each ``(workflow id, why)``.
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Runs to claim for a worker in the transaction that stores events (eager dispatch): up
    to ``limit`` of the runs then runnable, leased for ``lease_seconds``, as its own claim
    would. The worker holds ``limit`` slots free for them until the call returns."""

    worker_id: str
    limit: int
    lease_seconds: float


@dataclass(frozen=True, slots=True)
class SentEvents:
    """What :meth:`Store.send_events` did: per event its result, in order, and the runs it
    claimed for the caller's :class:`ClaimRequest` (none without one, or if nothing was
    runnable, or if the store does not claim at intake)."""

    results: list[IntakeResult]
    claimed: list[ClaimedRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    name: str
    data: dict[str, Any]
    ts: float


@dataclass(frozen=True, slots=True)
class WebhookRejection:
    """A webhook delivery refused: its source, the status answered and why; the body only when
    it was small (``body_bytes`` is its size, ``None`` when it was never read)."""

    seq: int
    source: str
    status: int
    reason: str
    body: str | None
    body_bytes: int | None
    received_at: float


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    id: str
    workflow_id: str
    event: StoredEvent
    created_at: float
    lease_token: int
    recoveries: int
    parent_run_id: str | None
    #: What was recorded when it was claimed (sleeps found due were recorded by the claim).
    history: tuple[StepRow, ...] = ()
    #: The lease this claim holds: what every write for the run is fenced by.
    lease: Lease = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lease", Lease(self.id, self.lease_token))


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step's final outcome. ``status`` is ``completed`` (with output) or ``failed`` (with error)."""

    key: str
    kind: StepKind
    status: Literal["completed", "failed"]
    output_json: str | None
    error_json: str | None
    attempts: int
    started_at: float
    event_id: str | None = None
    #: The events the step sends (``step.send_event``), stored in the step's transaction.
    sends: tuple[EventIntake, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on a run, from its claim: the run's id and the lease token the claim
    gave. Every write the worker makes for the run names it, and the store's fence lets the
    write through only while the run is still running under that token."""

    run_id: str
    token: int


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ends: ``completed`` with its result, ``failed`` or ``cancelled`` with its error
    (JSON text)."""

    status: Literal["completed", "failed", "cancelled"]
    result_json: str | None = None
    error_json: str | None = None


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """A failed attempt of a step that will be retried at ``retry_at``."""

    key: str
    attempt: int
    error_json: str
    started_at: float
    retry_at: float


#: The step key of the mark a retry leaves on a run (a step of kind ``cancel``, hidden as the
#: ``cancel_on`` watches are; its ``completed_at`` is the retry's time): the run's ``cancel_on``
#: watches, registered again after the retry, look only at events received since then. A step
#: name cannot hold the control character it starts with.
RETRY_MARK = "\x1fretried"


@dataclass(frozen=True, slots=True)
class NewWait:
    """A sleep or event wait a run reaches: its step ``key``, its deadline (``wake_at``, none
    for a wait without timeout) and, for an event wait, the events that ``match``, received at
    or after ``since`` (the run's creation) and other than the run's own ``trigger_event_id``."""

    key: str
    kind: str
    wake_at: float | None
    match: WaitMatch | None = None
    since: float = 0.0
    trigger_event_id: str = ""


@dataclass(frozen=True, slots=True)
class StepRow:
    """A step in a run's history.

    ``status`` is ``completed`` or ``failed`` for recorded outcomes, ``retrying`` for a step with
    failed attempts and no outcome yet (``wake_at`` is when the next attempt may start), and
    ``waiting`` for a sleep or wait that was reached but has not resolved (``wake_at`` is its
    recorded deadline, ``None`` for a wait without timeout).
    """

    key: str
    kind: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: float | None = None
    completed_at: float | None = None
    wake_at: float | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """A failed attempt of a step that was retried (a ``step_attempts`` row), read for display.

    ``retry_at`` is when the next attempt was allowed to start.
    """

    key: str
    attempt: int
    error: dict[str, Any]
    started_at: float
    failed_at: float
    retry_at: float


@dataclass(frozen=True, slots=True)
class WaitMatch:
    """Which events satisfy a wait: ``event_name`` and exact values at ``data.…`` paths."""

    event_name: str
    filters: tuple[tuple[str, Any], ...] = ()

    def matches(self, name: str, data: dict[str, Any]) -> bool:
        return name == self.event_name and all(
            lookup(data, path) == (True, value) for path, value in self.filters
        )


def lookup(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    """Follow ``data.a.b`` inside an event's data: ``(found, value)``."""
    parts = path.split(".")
    if parts[0] != "data":
        return (False, None)
    node: Any = data
    for part in parts[1:]:
        if not isinstance(node, dict) or part not in node:
            return (False, None)
        node = node[part]
    return (True, node)


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    """What :meth:`Store.begin_wait` found.

    ``state`` is ``resolved`` (the step was recorded now, ``event`` set for an event wait or
    ``None`` for an elapsed sleep or timed-out wait), ``pending`` (``wake_at`` is the recorded
    deadline) or ``fenced`` (this worker no longer holds the run).
    """

    state: Literal["resolved", "pending", "fenced"]
    event: StoredEvent | None = None
    wake_at: float | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    workflow_id: str
    status: str
    event: StoredEvent
    result: Any
    error: dict[str, Any] | None
    created_at: float
    updated_at: float
    completed_at: float | None
    wake_at: float | None
    wait_reason: str | None
    recoveries: int
    parent_run_id: str | None
    idempotency_key: str | None = None
    steps: tuple[StepRow, ...] = field(default=())
    #: The failed attempts of retried steps, by step key then attempt (read by ``get_run`` only).
    attempts: tuple[AttemptRow, ...] = field(default=())
    #: The version of the code the run started with (``None``: not started, or started before
    #: runs recorded versions).
    version: str | None = None


@dataclass(frozen=True, slots=True)
class UnfinishedRun:
    """A run not finished (``queued``, ``running``, ``waiting``) with its history, as the deploy
    check reads them, a page at a time."""

    id: str
    workflow_id: str
    status: str
    event: StoredEvent
    created_at: float
    version: str | None
    history: tuple[StepRow, ...] = ()


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A cron trigger as the code defines it, for :meth:`Store.sync_schedules`; ``next_at`` is
    its first tick from now, used when the schedule is new or its expression or zone changed."""

    id: str
    workflow_id: str
    expr: str
    tz: str
    catch_up: str
    next_at: float


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A stored schedule: ``next_at`` is the first tick not fired yet."""

    id: str
    workflow_id: str
    expr: str
    tz: str
    catch_up: str
    next_at: float
    paused: bool
    updated_at: float


@dataclass(frozen=True, slots=True)
class UnitRequest:
    """One unit of a shared step budget, asked for step ``step_key`` of the leased run: granted
    if fewer than ``limit`` grants of ``(budget, key)`` were taken in the last ``period``."""

    budget: str
    key: str
    limit: int
    period: float
    step_key: str


@dataclass(frozen=True, slots=True)
class UnitAnswer:
    """What :meth:`Store.take_budget_unit` did: ``granted`` (``grant_id`` names the grant, to
    return it when the call returns); ``denied`` (a unit may free up at ``wake_at``); or
    ``fenced`` (this worker no longer holds the run)."""

    state: Literal["granted", "denied", "fenced"]
    wake_at: float | None = None
    grant_id: int | None = None


@dataclass(frozen=True, slots=True)
class EventWait:
    """A run's pending wait for an event (the approvals inbox reads these), with the run's
    history."""

    run_id: str
    workflow_id: str
    step_key: str
    #: The wait's key of filter values, as the database stores it (canonical JSON text).
    filter_key: str
    wake_at: float | None
    created_at: float
    history: tuple[StepRow, ...]
