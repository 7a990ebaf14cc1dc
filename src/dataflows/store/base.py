"""The store interface: domain operations, one transaction each.

Every write that a worker makes on behalf of a run is *fenced*: it names the ``lease_token`` the
worker got when it claimed the run and takes effect only while the run is still ``running`` under
that token. A worker that lost its lease (paused, partitioned, slow) therefore cannot record a
result or finish the run (guarantee 3). Fenced operations return ``False`` (or a ``fenced``
outcome) instead of raising when the fence rejects them.

Backends translate their driver's connection errors into :class:`~dataflows.errors.StoreUnavailable`
at this edge and nothing else above it sees a driver exception.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

from dataflows.records import (
    ClaimedRun,
    ClaimRequest,
    EventIntake,
    EventWait,
    FailedAttempt,
    FlowLimit,
    Lease,
    NewRun,
    NewSchedule,
    NewStep,
    NewWait,
    RunRow,
    ScheduleRow,
    SentEvents,
    StepRow,
    StoredEvent,
    UnfinishedRun,
    UnitAnswer,
    UnitRequest,
    WaitOutcome,
    WebhookRejection,
)

Listener = Callable[[], None]
#: Called with runs event intake in another process claimed for a worker (see
#: :meth:`Store.add_assignee`): the runs to begin, and whether to look for more work as after a
#: plain wake-up.
Assignee = Callable[[list[ClaimedRun], bool], None]


class Store(abc.ABC):
    """A place where runs, steps and events live. Backends: SQLite and PostgreSQL."""

    dialect: str
    #: Whether event intake can claim runs for a worker of the sending process in its own
    #: transaction (eager dispatch). A worker reserves slots for it only where it can.
    claims_at_intake: bool = False
    #: Whether event intake in another process can claim runs for a worker that offered its
    #: free slots (:meth:`offer_slots`) and hand them over with the wake-up (remote eager
    #: dispatch): such a worker begins a woken run without a claim round trip.
    assigns_remotely: bool = False
    #: When a worker lock that :meth:`reap_workers` saw free will have been free for the grace
    #: the store gives a live worker to lock again (so the next look should come then); None
    #: when none is pending or the store needs no grace.
    reap_due_at: float | None = None

    def __init__(self) -> None:
        #: Each listener with the id of the worker it wakes, if it is a worker's.
        self._listeners: dict[Listener, str | None] = {}
        #: The workers of this process that take runs claimed for them elsewhere, by id.
        self._assignees: dict[str, Assignee] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self, *, migrate: bool = True) -> None:
        """Connect; with ``migrate``, create or upgrade the schema first."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending migrations (serialised between processes); return the ones applied."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""

    @abc.abstractmethod
    async def database_time(self) -> float:
        """The database server's clock, to align worker clocks with it."""

    # -- wake-up hints -----------------------------------------------------------------------------

    def add_listener(self, listener: Listener, *, worker_id: str | None = None) -> None:
        """Call ``listener`` (from the event loop) when new work may be runnable.

        A hint for latency only: workers also poll. A worker's listener names its
        ``worker_id``: an intake that claimed runs for that worker does not wake it.
        """
        self._listeners[listener] = worker_id

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.pop(listener, None)

    def notify_listeners(self, skip_worker: str | None = None) -> None:
        for listener, worker_id in list(self._listeners.items()):
            if skip_worker is None or worker_id != skip_worker:
                listener()

    def add_assignee(self, worker_id: str, assignee: Assignee) -> None:
        """Call ``assignee`` (from the event loop) with the runs event intake in any process
        claimed for ``worker_id`` from its offer (:meth:`offer_slots`)."""
        self._assignees[worker_id] = assignee

    def remove_assignee(self, worker_id: str) -> None:
        self._assignees.pop(worker_id, None)

    async def offer_slots(self, worker_id: str, slots: int, lease_seconds: float) -> None:
        """Offer ``slots`` free slots of an idle worker to event intake in other processes (0:
        withdraw the offer). Intake claims the runs an event makes runnable for it, up to the
        offer, under a lease of ``lease_seconds``, and sends them with its wake-up; the worker
        gives back what it cannot take. A no-op where :attr:`assigns_remotely` is false."""
        return None

    # -- intake ------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def send_events(
        self, intakes: Sequence[EventIntake], now: float, claim: ClaimRequest | None = None
    ) -> SentEvents:
        """Store events and create the runs they start, in one transaction.

        An event whose id is already stored is a duplicate: nothing is written for it and the
        result carries the ids of the runs it started the first time. Every stored event wakes
        the runs with a wait that it matches (``queued`` if they were ``waiting``; flagged so a
        run about to suspend re-queues instead).

        With a ``claim``, a store may also claim runnable runs for that worker in the same
        transaction (eager dispatch: a run an event starts or wakes begins without a further
        round trip); they come back in the answer, which the caller then runs.
        """

    @abc.abstractmethod
    async def start_run(self, run: NewRun, now: float) -> tuple[str, bool]:
        """Create a ``queued`` run; ``(run_id, created)``.

        With an ``idempotency_key`` already used for the same workflow, nothing is created and the
        existing run's id is returned with ``created=False``.
        """

    # -- the worker's side ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_runs(
        self, worker_id: str, limit: int, lease_seconds: float, now: float
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` runnable runs, oldest first, skipping rows other workers lock.

        Runnable: ``queued``; ``waiting`` with ``wake_at <= now``; ``running`` with an expired
        lease (a crashed worker: ``recoveries`` is incremented). Each claim increments the run's
        ``lease_token`` and sets it ``running`` until ``now + lease_seconds``. Re-claiming a
        run whose expired lease the same worker held is not a recovery.

        Each claimed run carries its history (as :meth:`load_history` would read it), and the
        sleeps of claimed runs whose deadline is ``<= now`` are recorded as elapsed by the claim
        itself (they appear in that history as completed).
        """

    @abc.abstractmethod
    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], lease_seconds: float, now: float
    ) -> set[str]:
        """Extend this worker's leases on ``run_ids`` (even expired ones nobody took over).

        Returns the ids renewed; a run missing from the answer was cancelled or taken over.
        Only runs the worker is executing are renewed, so a run it lost track of expires.
        """

    @abc.abstractmethod
    async def load_history(self, run_id: str) -> list[StepRow]:
        """The run's steps, recorded and in progress, in one query, in recording order."""

    @abc.abstractmethod
    async def record_step(self, lease: Lease, step: NewStep, now: float) -> bool:
        """Record a step's outcome once (fenced), with the events it sends (``step.sends``), in
        one transaction.

        A step key already recorded is never overwritten. Any wait row of the step is removed.
        Returns ``False`` only when fenced: a key already recorded while the caller still holds
        the lease is a retry whose first answer was lost, and returns ``True``.
        """

    @abc.abstractmethod
    async def record_attempt(self, lease: Lease, attempt: FailedAttempt, now: float) -> bool:
        """Record a failed attempt of a step that will be retried at ``attempt.retry_at`` (fenced).

        Like :meth:`record_step`, ``False`` means fenced and a repeated record returns ``True``.
        """

    @abc.abstractmethod
    async def begin_wait(self, lease: Lease, wait: NewWait, now: float) -> WaitOutcome:
        """Reach a sleep or an event wait, in one transaction (fenced).

        The deadline is stored the first time the step is reached and never moved later. With a
        ``match``, the oldest matching event received at or after ``since`` (the run's creation),
        other than the run's own ``trigger_event_id``, that no earlier step of this run consumed,
        resolves the step (recorded with the event as output
        and ``event_id``). Otherwise, once ``now`` has reached the deadline, the step is recorded
        with output ``null``. Otherwise the wait row stays and the outcome is ``pending``.
        Matching and event intake are serialised so an event arriving meanwhile is never missed.
        """

    @abc.abstractmethod
    async def suspend_run(
        self, lease: Lease, wake_at: float | None, reason: str, now: float
    ) -> bool:
        """Release the run to ``waiting`` until ``wake_at`` (fenced).

        If an event matched one of its waits since it was claimed, it goes back to ``queued``.
        """

    @abc.abstractmethod
    async def complete_run(
        self, lease: Lease, result_json: str, now: float, *, has_parent: bool = True
    ) -> bool:
        """Finish the run as ``completed`` (fenced); a child run tells its parent.

        ``has_parent=False`` (the claim said the run has no parent) lets a store finish it in
        fewer round trips.
        """

    @abc.abstractmethod
    async def fail_run(
        self, lease: Lease, error_json: str, now: float, *, has_parent: bool = True
    ) -> bool:
        """Finish the run as ``failed`` (fenced); a child run tells its parent (see complete_run)."""

    @abc.abstractmethod
    async def still_held(self, worker_id: str, run_ids: Sequence[str]) -> set[str]:
        """The ids of ``run_ids`` still running under ``worker_id``'s lease: one indexed read (a
        worker woken by a notification asks about the runs it holds in sleeps in memory; the
        others were cancelled or taken over)."""

    @abc.abstractmethod
    async def holds_lease(self, lease: Lease) -> bool:
        """Whether ``lease`` still holds its run (running, same token): one indexed read. A
        worker asks before it goes on after a wait held in memory (a retry backoff), so a run
        cancelled meanwhile starts no further attempt."""

    @abc.abstractmethod
    async def release_run(self, lease: Lease, now: float) -> bool:
        """Give a held run back as ``queued`` (graceful shutdown) without counting a recovery."""

    # -- liveness: failover without waiting for a lease ---------------------------------------------

    @abc.abstractmethod
    async def register_worker(self, worker_id: str, now: float) -> None:
        """Hold a lock that says ``worker_id`` is alive for as long as this process lives (a
        PostgreSQL session advisory lock, an OS file lock beside a SQLite file) and record the
        worker. The lock dies with the process, so :meth:`reap_workers` sees the death at once;
        a paused process keeps it, and the lease still fences it."""

    @abc.abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """The worker stopped: remove its record and release its lock."""

    @abc.abstractmethod
    async def reap_workers(self, now: float) -> list[str]:
        """End the leases of the running runs of every worker whose lock is free (its process
        died), so that the next claim takes them over now; return those runs' ids. Also renews
        this store's own locks if the connection holding them was lost."""

    @abc.abstractmethod
    async def list_workers(self) -> list[tuple[str, float]]:
        """``(worker_id, registered_at)`` of the workers recorded alive, oldest first."""

    @abc.abstractmethod
    async def next_wake_at(self) -> float | None:
        """The earliest ``wake_at`` among waiting runs, for the worker's local timer."""

    # -- the client's side ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRow | None:
        """The run with its steps, or ``None``."""

    @abc.abstractmethod
    async def unfinished_runs(
        self, after: str, limit: int, workflow_id: str | None = None
    ) -> list[UnfinishedRun]:
        """Up to ``limit`` unfinished runs (of ``workflow_id``, if given) with their histories,
        by id after ``after`` (``""`` for the first page): keyset pagination."""

    @abc.abstractmethod
    async def set_run_version(self, lease: Lease, version: str) -> bool:
        """Record the version of the code the leased run started with, unless it has one;
        fenced. False if nothing was written."""

    @abc.abstractmethod
    async def get_event(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or ``None`` (never stored, or purged)."""

    @abc.abstractmethod
    async def recent_events(
        self, limit: int, before_seq: int | None = None
    ) -> list[tuple[int, StoredEvent]]:
        """``(seq, event)`` of stored events, newest first, from before ``before_seq``."""

    @abc.abstractmethod
    async def record_webhook_rejection(self, rejection: WebhookRejection, keep: int) -> None:
        """Store a refused webhook delivery; only the newest ``keep`` are kept."""

    @abc.abstractmethod
    async def recent_webhook_rejections(
        self, limit: int, before_seq: int | None = None
    ) -> list[WebhookRejection]:
        """Refused webhook deliveries, newest first, from before ``before_seq``."""

    @abc.abstractmethod
    async def run_waits(
        self, run_id: str
    ) -> list[tuple[str, str, str | None, str | None, str | None, float | None]]:
        """The run's pending waits: ``(step_key, kind, event_name, filter_paths, filter_key,
        wake_at)``, the filters as stored (JSON text)."""

    @abc.abstractmethod
    async def runs_of_event(self, event_id: str, limit: int) -> list[tuple[str, str, str, str]]:
        """``(run_id, workflow_id, status, how)`` of up to ``limit`` runs ``event_id`` started
        (``how`` is ``"started"``) and up to ``limit`` it resumed (``"resumed"``)."""

    @abc.abstractmethod
    async def event_waits(self, event_name: str, limit: int) -> list[EventWait]:
        """Up to ``limit`` pending waits for events named ``event_name``, oldest first, each
        with its run's workflow and history (one transaction)."""

    @abc.abstractmethod
    async def run_status(self, run_id: str) -> str | None:
        """The run's status alone (one indexed read), or ``None`` if there is no such run."""

    @abc.abstractmethod
    async def list_runs(
        self,
        workflow_id: str | None,
        status: str | None,
        limit: int,
        before: tuple[float, str] | None = None,
    ) -> list[RunRow]:
        """Runs newest first (without steps); ``before`` is the ``(created_at, id)`` to page from."""

    @abc.abstractmethod
    async def cancel_run(self, run_id: str, now: float) -> str:
        """Cancel a run that has not finished; return its status afterwards.

        Its unfinished children (the runs it invoked), and theirs, are cancelled in the same
        transaction. Raises :class:`RunNotFound`. A run already finished keeps its status.
        """

    @abc.abstractmethod
    async def cancel_matching(
        self,
        workflow_id: str | None,
        statuses: Sequence[str],
        created_after: float | None,
        created_before: float | None,
        batch: int,
        now: float,
    ) -> list[str]:
        """Cancel up to ``batch`` unfinished runs matching the filters (``None``: any), oldest
        first, with their unfinished children, in one transaction: the ids of the matching
        runs cancelled. Call again until it answers fewer than ``batch``."""

    @abc.abstractmethod
    async def cancel_unstarted(self, now: float, batch: int = 100) -> list[str]:
        """Cancel (``StartTimeout``) up to ``batch`` queued runs never claimed by their
        ``start_by``; their ids."""

    @abc.abstractmethod
    async def retry_run(self, run_id: str, now: float) -> str:
        """Queue a ``failed`` or ``cancelled`` run again: recorded results stay, failed step
        outcomes and their attempts are forgotten so those steps run again, and the recovery
        count restarts. Raises :class:`RunNotFound` or :class:`InvalidRunState`."""

    @abc.abstractmethod
    async def run_counts(self) -> list[tuple[str, str, int]]:
        """``(workflow_id, status, count)`` of unfinished runs: the queue depth."""

    # -- flow limits ---------------------------------------------------------------------------------

    @abc.abstractmethod
    async def sync_flow_limits(self, limits: Sequence[FlowLimit], now: float) -> None:
        """Make the stored concurrency limits ``limits`` (the code's), in one transaction."""

    @abc.abstractmethod
    async def held_counts(self) -> list[tuple[str, str, int]]:
        """``(workflow_id, limit, count)`` of the runs a flow limit (``concurrency``,
        ``throttle``, ``debounce``) holds back now."""

    @abc.abstractmethod
    async def list_flow_limits(self) -> list[FlowLimit]:
        """Every stored concurrency limit, by workflow id."""

    # -- schedules -----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def sync_schedules(self, schedules: Sequence[NewSchedule], now: float) -> None:
        """Make the stored schedules ``schedules`` (the code's), in one transaction: new ones
        are added with their ``next_at``; a changed one is updated, its ``next_at`` replaced only
        if its expression or zone changed; paused stays as it was; the others are deleted."""

    @abc.abstractmethod
    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by id."""

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str) -> ScheduleRow | None: ...

    @abc.abstractmethod
    async def due_schedules(self, now: float) -> list[ScheduleRow]:
        """The schedules not paused whose ``next_at`` is at or before ``now``, earliest first."""

    @abc.abstractmethod
    async def next_schedule_at(self) -> float | None:
        """The earliest ``next_at`` of a schedule not paused."""

    @abc.abstractmethod
    async def advance_schedule(
        self, schedule_id: str, expected: float, next_at: float, now: float
    ) -> bool:
        """Compare-and-set ``next_at`` from ``expected``; ``False`` if it was not ``expected``
        any more, or the schedule is paused or gone."""

    @abc.abstractmethod
    async def pause_schedule(self, schedule_id: str, now: float) -> ScheduleRow | None:
        """Pause; the schedule afterwards, ``None`` if there is no such schedule."""

    @abc.abstractmethod
    async def resume_schedule(
        self, schedule_id: str, next_at: float, now: float
    ) -> ScheduleRow | None:
        """Resume a paused schedule from ``next_at`` (one not paused is left as it is); the
        schedule afterwards, ``None`` if there is no such schedule."""

    # -- shared step budgets -------------------------------------------------------------------------

    @abc.abstractmethod
    async def take_budget_unit(
        self, lease: Lease, request: UnitRequest, clock: Callable[[], float]
    ) -> UnitAnswer:
        """Take one unit of ``(request.budget, request.key)`` for the leased run, in one
        transaction serialised with every other taker of that budget and key: ``granted`` (with
        the grant's id) if fewer than ``request.limit`` grants are still in their window, else
        ``denied`` with when a unit may free up; ``fenced`` if the worker no longer holds the
        run. ``now`` is read from ``clock`` once this taker holds the lock. A grant's window
        ends ``period`` after its call returns (:meth:`return_budget_unit`), or ``2 * period``
        after the grant if it never does. A grant also deletes a bounded number of expired grants."""

    @abc.abstractmethod
    async def rate_limited_waits(self) -> list[tuple[str, int]]:
        """``(wait_reason, count)`` of the runs waiting for a unit of a budget."""

    @abc.abstractmethod
    async def return_budget_unit(self, grant_id: int, period: float, now: float) -> None:
        """The call paid for by the grant returned at ``now``: its window ends at
        ``now + period``. Not fenced: the call was made, whoever holds the run now."""

    @abc.abstractmethod
    async def purge_finished(self, before: float, batch: int) -> int:
        """Delete up to ``batch`` finished runs (with their steps) completed before ``before``,
        and up to ``batch`` events received before it; return how many rows went."""
