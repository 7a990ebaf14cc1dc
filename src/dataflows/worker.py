"""The worker: claims runnable runs, executes them, keeps their leases alive, and shuts down cleanly.

It never holds a transaction while user code runs: claiming, recording and suspending are each one
short store operation. It wakes on store notifications, on a local timer for the earliest due
sleep, and on a polling backstop; notifications are hints, the poll is the correctness path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from dataflows import outcomes, tracing
from dataflows.clock import Clock
from dataflows.context import log_fields
from dataflows.durations import Duration
from dataflows.errors import StoreUnavailable, Suspend, UnknownWorkflow
from dataflows.execution import Execution, Runtime, error_json, retry_unavailable
from dataflows.intake import new_id
from dataflows.models import Event
from dataflows.outage import STORE_OUTAGE
from dataflows.records import ClaimedRun, ClaimRequest, EventIntake, IntakeResult, Lease
from dataflows.scheduler import Scheduler
from dataflows.step import Step
from dataflows.store.base import Store
from dataflows.workflow import Registry

log = logging.getLogger("dataflows.worker")

#: Names the threads that run sync step functions (see :func:`step_threads_left`).
STEP_THREAD_PREFIX = "dataflows-step"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 10
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    max_recoveries: int = 3
    #: Recycle (stop cleanly, for a supervisor to restart) after this many finished runs …
    max_runs: int | None = None
    #: … or once resident memory exceeds this many MiB.
    max_rss_mb: float | None = None
    inline_retry_limit: float = 2.0
    #: Sleeps due within this many seconds are waited out in memory (the run keeps its slot).
    inline_sleep_limit: float = 2.0
    #: Seconds (on average) between clock re-alignments and retention purges.
    maintenance_interval: float = 60.0
    #: Seconds (on average) between looks for dead workers, whose runs are then taken over.
    failover_interval: float = 0.2
    #: Seconds at most between looks at the schedules (when the code has cron triggers): a
    #: pause, resume or deploy made elsewhere is seen within this.
    schedule_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if (
            min(
                self.lease_seconds,
                self.poll_interval,
                self.failover_interval,
                self.schedule_interval,
            )
            <= 0
        ):
            raise ValueError(
                "lease_seconds, poll_interval, failover_interval and schedule_interval must be "
                "positive"
            )


class WorkerApp(Protocol):
    """What a worker needs from the app whose runs it executes (a :class:`dataflows.Dataflows`)."""

    clock: Clock
    registry: Registry
    max_payload: int
    retention: float | None
    #: The worker event intake claims runs for (eager dispatch): the process's first worker.
    eager_worker: Worker | None

    @property
    def store(self) -> Store: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def sync_clock(self) -> None: ...

    async def purge(self, older_than: Duration, batch: int = 500) -> int: ...


class Worker:
    def __init__(self, app: WorkerApp, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, options.concurrency), thread_name_prefix=STEP_THREAD_PREFIX
        )
        self._active: dict[str, tuple[asyncio.Task[None], Execution | None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tokens: dict[str, int] = {}
        self._reserved = 0  # slots held for runs event intake may claim for us
        self._offered = 0  # free slots offered to intake in other processes, as we last knew
        self._offer_lock = asyncio.Lock()  # one offer write at a time, in order
        self._withdrawing: asyncio.Task[None] | None = None
        self._deferred = False  # the claim loop found every free slot reserved
        self._handing_back: set[asyncio.Task[None]] = set()
        self._renewed_at = time.monotonic()
        self._registered = False  # the store holds this worker's liveness lock
        self._held_check: asyncio.Task[None] | None = None
        self._limits_synced = False  # the store has the concurrency limits of this code
        self._swept_at = 0.0  # when runs past their start_timeout were last cancelled
        self.scheduler = Scheduler(app, options.schedule_interval)
        self.finished_runs = 0
        #: Claim rounds begun, and the last of them that began and ended with nothing to do (no
        #: run executing or reserved, none claimed): a round begun after some moment that found
        #: nothing tells that the worker was idle since (``dataflows.testing`` waits on it).
        self.claim_rounds = 0
        self.idle_round = 0
        self.recycled = False

    @property
    def runtime(self) -> Runtime:
        return Runtime(
            store=self.app.store,
            clock=self.app.clock,
            registry=self.app.registry,
            executor=self._executor,
            max_payload=self.app.max_payload,
            inline_retry_limit=self.options.inline_retry_limit,
            inline_sleep_limit=self.options.inline_sleep_limit,
            approval_links=getattr(self.app, "approval_links", None),
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def lease_seconds(self) -> float:
        return self.options.lease_seconds

    async def start(self) -> None:
        await self.app.open()
        self.app.store.add_listener(self.wake, worker_id=self.id)
        self.app.store.add_assignee(self.id, self.assigned)
        if self.app.eager_worker is None:  # one per process: the first worker
            self.app.eager_worker = self
        add_clock_listener = getattr(self.app.clock, "add_listener", None)
        if add_clock_listener is not None:
            add_clock_listener(self.wake)
            add_clock_listener(self.scheduler.wake)
        await self._prepare()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name=f"dataflows-claim-{self.id}"),
            asyncio.create_task(self._failover_loop(), name=f"dataflows-failover-{self.id}"),
            asyncio.create_task(self._heartbeat_loop(), name=f"dataflows-heartbeat-{self.id}"),
            asyncio.create_task(self._maintenance_loop(), name=f"dataflows-maintenance-{self.id}"),
            asyncio.create_task(self.scheduler.run(), name=f"dataflows-schedules-{self.id}"),
        ]
        log.info("worker %s started (concurrency %d)", self.id, self.options.concurrency)

    @property
    def idle(self) -> bool:
        """No run is executing here, and no slot is reserved for runs event intake may claim."""
        return not self._active and not self._reserved

    async def _prepare(self) -> None:
        """Before the first claim: the worker's liveness lock, and the code's schedules and
        limits written to the store. Three independent round trips (PostgreSQL: the lock on a
        connection of its own, each sync in a transaction of its own), made at once; the first
        exception is raised once all have ended."""

        async def register() -> None:
            with contextlib.suppress(StoreUnavailable):  # else the failover loop registers it
                await self.app.store.register_worker(self.id, self.app.clock.now())
                self._registered = True

        async def sync_schedules() -> None:
            with contextlib.suppress(StoreUnavailable):  # else the schedule loop syncs first
                await self.scheduler.sync()  # schedules follow the code this worker runs

        async def sync_limits() -> None:
            with contextlib.suppress(StoreUnavailable):  # else the claim loop syncs first
                await self._sync_limits()  # concurrency limits follow the code too

        outcomes = await asyncio.gather(
            register(), sync_schedules(), sync_limits(), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def wake(self) -> None:
        self._wake.set()
        # A notification may mean a run held here in a sleep was cancelled: ask, once at a time.
        if self._held_check is None and not self._stopping.is_set() and self._holding():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not from the worker's loop: the fenced write still decides
                return
            self._held_check = loop.create_task(self._check_held())

    def _holding(self) -> list[str]:
        return [r for r, (_, x) in self._active.items() if x is not None and x.holding]

    async def _check_held(self) -> None:
        """One read says which of the runs held in sleeps here are still ours; the others
        (cancelled, or taken over) give up their sleep now and free their slot."""
        try:
            holding = self._holding()
            if holding:
                held = await self.app.store.still_held(self.id, holding)
                for run_id in set(holding) - held:
                    entry = self._active.get(run_id)
                    if entry is not None and entry[1] is not None:
                        entry[1].abandoned = True
        except Exception as exc:  # a hint only: the fenced write after the sleep decides
            log.debug("checking held runs failed: %r", exc)
        finally:
            self._held_check = None

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running steps finish within ``grace`` seconds, release the rest."""
        self.request_stop()
        grace = self.options.shutdown_grace if grace is None else grace
        claim_loop = self._tasks[0] if self._tasks else None
        if claim_loop is not None:
            await asyncio.gather(claim_loop, return_exceptions=True)
        await self._offer(0)  # runs claimed for us until then are given back (assigned)
        if self._withdrawing is not None:
            await asyncio.gather(self._withdrawing, return_exceptions=True)
        pending = [task for task, _ in self._active.values()]
        for _, execution in self._active.values():
            if execution is not None:
                execution.interrupt()  # sleeps and backoffs held in memory suspend their runs now
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for run_id, (task, execution) in list(self._active.items()):
                if task in still:
                    if execution is not None:
                        execution.abandoned = True
                    task.cancel()
                    await self._release(run_id)
            await asyncio.gather(*pending, return_exceptions=True)
        tasks = [*self._tasks, *([self._held_check] if self._held_check else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self.app.store.unregister_worker(self.id)
        self.app.store.remove_listener(self.wake)
        self.app.store.remove_assignee(self.id)
        if self.app.eager_worker is self:
            self.app.eager_worker = None
        remove_clock_listener = getattr(self.app.clock, "remove_listener", None)
        if remove_clock_listener is not None:
            remove_clock_listener(self.wake)
            remove_clock_listener(self.scheduler.wake)
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("worker %s stopped", self.id)

    async def _release(self, run_id: str) -> None:
        token = self._tokens.get(run_id)
        if token is None:
            return
        with contextlib.suppress(StoreUnavailable):
            await self.app.store.release_run(Lease(run_id, token), self.app.clock.now())

    # -- claiming ------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            self._wake.clear()
            free = self.options.concurrency - len(self._active) - self._reserved
            self._deferred = free <= 0 < self._reserved
            try:
                if time.monotonic() - self._renewed_at > self.options.lease_seconds / 2:
                    # After an outage, renew our own leases before claiming, so we do not
                    # re-claim (and run a second time) what we are still executing.
                    await self._renew_leases()
                self.claim_rounds += 1
                round_, idle = self.claim_rounds, self.idle
                claimed = await self._claim(free) if free > 0 else []
                if idle and not claimed and self.idle:
                    self.idle_round = round_
                backoff = 0.1
                STORE_OUTAGE.available()
            except StoreUnavailable as exc:
                STORE_OUTAGE.unavailable(exc)
                await self._idle(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if self.app.registry.start_timeouts:
                await self._cancel_unstarted()
            for run in claimed:
                self._spawn(run)
            if claimed and len(claimed) == free:
                continue  # more may be waiting; slots free up as runs finish
            if claimed:
                await asyncio.sleep(0)  # the claimed runs begin before the next timer is read
            elif self.idle and not self._wake.is_set():
                await self._offer(free)
            await self._idle(await self._until_next_timer())

    # -- eager dispatch --------------------------------------------------------------------------------

    async def _offer(self, slots: int) -> None:
        """Offer ``slots`` free slots to event intake in other processes, or withdraw the offer
        (0), if that changes what the store has. A worker that goes idle offers all its slots;
        one that fills up withdraws (:meth:`_spawn`), so that intake hands runs to a worker with
        room. An offer out of date costs only a run given back (:meth:`assigned`)."""
        if not self.app.store.assigns_remotely:
            return
        async with self._offer_lock:
            if slots == self._offered:
                return
            with contextlib.suppress(StoreUnavailable):  # the offer is a latency hint only
                await self.app.store.offer_slots(self.id, slots, self.options.lease_seconds)
                self._offered = slots

    def _withdraw_if_full(self) -> None:
        if (
            self._offered
            and len(self._active) >= self.options.concurrency
            and self._withdrawing is None
        ):
            self._withdrawing = asyncio.get_running_loop().create_task(self._withdraw())

    async def _withdraw(self) -> None:
        try:
            await self._offer(0)
        finally:
            self._withdrawing = None

    def assigned(self, runs: list[ClaimedRun], more: bool) -> None:
        """Runs event intake in another process claimed for us from our offer, handed over
        with its notification: begun at once, as if claimed here, up to the free slots; the
        rest go back to the queue."""
        self._offered = max(0, self._offered - len({run.id for run in runs}))
        free = self.options.concurrency - len(self._active) - self._reserved
        for run in runs:
            here = run.id in self._active  # its execution here is ending: _spawn supersedes it
            if self._stopping.is_set() or (free <= 0 and not here):
                self._give_back(run.lease)
            else:
                self._spawn(run)
                free -= 0 if here else 1
        if more:
            self.wake()

    def _give_back(self, lease: Lease) -> None:
        task = asyncio.get_running_loop().create_task(self._hand_back_lease(lease))
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    async def _hand_back_lease(self, lease: Lease) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.app.store.release_run(lease, self.app.clock.now())

    async def send_events(self, intakes: Sequence[EventIntake], now: float) -> list[IntakeResult]:
        """Store events, the store claiming for this worker's free slots the runs they start or
        wake in the same transaction (eager dispatch: they begin without a claim round trip)."""
        slots = self.reserve() if self.app.store.claims_at_intake else 0
        claim = ClaimRequest(self.id, slots, self.options.lease_seconds) if slots else None
        claimed: list[ClaimedRun] = []
        try:
            sent = await self.app.store.send_events(intakes, now, claim)
            claimed = sent.claimed
        finally:
            if slots:
                self.deliver(claimed, slots)
        return sent.results

    def reserve(self) -> int:
        """Free slots for runs that event intake in this process claims for us."""
        if self._stopping.is_set():
            return 0
        free = max(0, self.options.concurrency - len(self._active) - self._reserved)
        self._reserved += free
        return free

    def deliver(self, runs: list[ClaimedRun], reserved: int) -> None:
        self._reserved -= reserved
        if self._deferred:  # the claim loop stood back for this reservation: it may go on
            self._deferred = False
            self._wake.set()
        for run in runs:
            if self._stopping.is_set():  # stopping meanwhile: hand it back at once
                self._give_back(run.lease)
            else:
                self._spawn(run)

    async def _cancel_unstarted(self) -> None:
        """Cancel the runs never started by their ``start_timeout`` (at most once a poll)."""
        if time.monotonic() - self._swept_at < self.options.poll_interval:
            return
        self._swept_at = time.monotonic()
        with contextlib.suppress(StoreUnavailable):
            cancelled = await self.app.store.cancel_unstarted(self.app.clock.now())
            if cancelled:
                log.warning(
                    "cancelled %d run(s) not started within their start_timeout", len(cancelled)
                )

    async def _sync_limits(self) -> None:
        now = self.app.clock.now()
        await self.app.store.sync_flow_limits(self.app.registry.flow_limits(), now)
        self._limits_synced = True

    async def _claim(self, free: int) -> list[ClaimedRun]:
        if not self._limits_synced:
            await self._sync_limits()
        return await self.app.store.claim_runs(
            self.id, free, self.options.lease_seconds, self.app.clock.now()
        )

    async def _until_next_timer(self) -> float:
        timeout = self.options.poll_interval
        try:
            due = await self.app.store.next_wake_at()
        except StoreUnavailable:
            return timeout
        if due is not None:
            timeout = min(timeout, max(0.0, due - self.app.clock.now()))
        return timeout

    async def _idle(self, timeout: float) -> None:
        if self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _spawn(self, run: ClaimedRun) -> None:
        stale = self._active.get(run.id)
        if stale is not None and stale[1] is not None:
            execution = stale[1]
            if run.lease_token == execution.run.lease_token + 1 and not execution.closing:
                # We re-claimed our own run (its lease expired, e.g. in a database outage) and
                # nobody held it in between: the execution goes on under the new token.
                execution.run = dataclasses.replace(execution.run, lease_token=run.lease_token)
                self._tokens[run.id] = run.lease_token
                return
            # Otherwise the older execution is superseded: it must start no further step.
            execution.abandoned = True
        self._tokens[run.id] = run.lease_token
        task = asyncio.create_task(self._execute(run), name=f"dataflows-run-{run.id}")
        self._active[run.id] = (task, None)
        task.add_done_callback(functools.partial(self._finished, run.id))
        self._withdraw_if_full()

    def _finished(self, run_id: str, task: asyncio.Task[None]) -> None:
        entry = self._active.get(run_id)
        if entry is None or entry[0] is not task:
            return  # a superseded execution: the newer one owns the run's bookkeeping
        del self._active[run_id]
        self._tokens.pop(run_id, None)
        self.finished_runs += 1
        if self._should_recycle():
            self.recycled = True
            self.request_stop()
        self._wake.set()

    def _should_recycle(self) -> bool:
        opts = self.options
        if opts.max_runs is not None and self.finished_runs >= opts.max_runs:
            return True
        return opts.max_rss_mb is not None and _rss_mb() > opts.max_rss_mb

    # -- executing -----------------------------------------------------------------------------------

    async def _execute(self, run: ClaimedRun) -> None:
        try:
            if run.recoveries > self.options.max_recoveries:
                await outcomes.fail(self.app.store, self.app.clock, run, outcomes.poison_error(run))
                return
            try:
                workflow = self.app.registry.get(run.workflow_id)
            except UnknownWorkflow as exc:
                await outcomes.fail(self.app.store, self.app.clock, run, error_json(exc))
                return
            execution = Execution(self.runtime, run, workflow, list(run.history))
            task, _ = self._active[run.id]
            if task is asyncio.current_task():  # not superseded by a newer claim meanwhile
                self._active[run.id] = (task, execution)
            execution.trace = tracing.start_run(
                run.id, run.workflow_id, run.lease_token, run.parent_run_id
            )
            try:
                await self._drive(execution)
            finally:
                if execution.trace is not None:
                    execution.trace.end()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the engine: never let it kill the worker
            log.exception(
                "run %s: unexpected error; its lease will expire and it will retry",
                run.id,
                extra=log_fields(run.id, run.workflow_id),
            )

    async def _drive(self, x: Execution) -> None:
        run, workflow, clock = x.run, x.workflow, self.app.clock
        deadline = None if workflow.timeout is None else run.created_at + workflow.timeout
        outcome: BaseException | None = None
        result = None
        try:
            if deadline is not None and clock.now() >= deadline:
                raise TimeoutError(f"workflow {workflow.id!r} timed out after {workflow.timeout}s")
            if not run.history:  # its first attempt, most likely: the version it starts with
                x.in_background(x.record_version)
            if workflow.cancel_on:
                await x.watch_cancel()
            body = workflow.fn(Event.from_stored(run.event), Step(x))
            with x.trace.activate() if x.trace is not None else contextlib.nullcontext():
                if deadline is None:
                    result = await body
                else:
                    result = await asyncio.wait_for(body, max(0.0, deadline - clock.now()))
        except Suspend:
            pass
        except Exception as exc:
            outcome = exc
        await x.drain()
        run = x.run  # the lease token may have been renewed by a re-claim meanwhile
        if x.abandoned:
            log.info(
                "run %s: lease lost or run cancelled; dropping it",
                run.id,
                extra=log_fields(run.id, run.workflow_id),
            )
            return
        if x.fatal is not None:
            _trace_outcome(x, "failed", x.fatal)
            await outcomes.fail(self.app.store, self.app.clock, run, error_json(x.fatal))
        elif x.suspensions:
            wake_at, reason = _earliest(x.suspensions)
            if deadline is not None and (wake_at is None or deadline < wake_at):
                wake_at, reason = deadline, "workflow timeout"
            _trace_outcome(x, "suspended")
            await retry_unavailable(
                lambda: self.app.store.suspend_run(run.lease, wake_at, reason, clock.now())
            )
        elif outcome is not None:
            _trace_outcome(x, "failed", outcome)
            await outcomes.fail(self.app.store, self.app.clock, run, error_json(outcome))
        else:
            refused = await outcomes.complete(
                self.app.store, self.app.clock, run, result, self.app.max_payload
            )
            # A result too large to store failed the run instead.
            _trace_outcome(x, "completed" if refused is None else "failed", refused)

    # -- leases ----------------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.lease_seconds / 3)
            try:
                await self._renew_leases()
            except StoreUnavailable as exc:
                STORE_OUTAGE.unavailable(exc)

    async def _renew_leases(self) -> None:
        """Extend the leases of the runs this worker executes; drop those it no longer holds."""
        asked = list(self._active)
        if asked:
            held = await self.app.store.heartbeat(
                self.id, asked, self.options.lease_seconds, self.app.clock.now()
            )
            for run_id in set(asked) - held:
                entry = self._active.get(run_id)
                if entry is not None and entry[1] is not None:
                    # Cancelled, or taken over after our lease expired: start no further step.
                    entry[1].abandoned = True
        self._renewed_at = time.monotonic()

    async def _failover_loop(self) -> None:
        """Look for workers whose process died (their liveness lock is free) and end the leases
        of their runs, so that a claim (ours or another worker's) resumes them within about a
        second, not a lease later. A paused worker keeps its lock: its runs wait out the lease."""
        store = self.app.store
        while True:
            pause = self.options.failover_interval * (0.5 + random.random())
            if store.reap_due_at is not None:  # a lock seen free: look again once its grace ends
                pause = min(pause, max(0.0, store.reap_due_at - self.app.clock.now()))
            await asyncio.sleep(pause)
            try:
                now = self.app.clock.now()
                if not self._registered:
                    await self.app.store.register_worker(self.id, now)
                    self._registered = True
                taken = await self.app.store.reap_workers(now)
            except StoreUnavailable:
                continue  # the claim loop reports outages
            if taken:
                log.warning(
                    "%d run(s) of a worker that died are taken over: %s",
                    len(taken),
                    ", ".join(taken[:10]) + (" …" if len(taken) > 10 else ""),
                )
                self.wake()

    async def _maintenance_loop(self) -> None:
        """Now and then: re-align the clock with the database and purge expired finished runs."""
        while True:
            await asyncio.sleep(self.options.maintenance_interval * (0.5 + random.random()))
            try:
                await self.app.sync_clock()
                if self.app.retention is not None:
                    await self.app.purge(self.app.retention, batch=500)
            except StoreUnavailable as exc:
                STORE_OUTAGE.unavailable(exc)


def _earliest(suspensions: list[tuple[float | None, str]]) -> tuple[float | None, str]:
    timed = [s for s in suspensions if s[0] is not None]
    return min(timed, key=lambda s: s[0]) if timed else suspensions[0]  # type: ignore[arg-type,return-value]


def _trace_outcome(x: Execution, outcome: str, error: BaseException | None = None) -> None:
    if x.trace is not None:
        x.trace.outcome(outcome, error)


def step_threads_left(timeout: float) -> bool:
    """Whether a sync step function is still running after ``timeout`` seconds.

    Such a thread cannot be interrupted, and Python joins it at exit: a worker whose grace
    period ran out would otherwise hang until the step returned.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(STEP_THREAD_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return True
    return False


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError):
        return 0.0
