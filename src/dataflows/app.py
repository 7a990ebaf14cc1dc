"""The app: where workflows are registered, events sent, runs started and inspected, workers run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dataflows import metrics, runner, tracing
from dataflows.budgets import Budget, make_budget
from dataflows.clock import Clock, SystemClock
from dataflows.durations import Duration, parse_duration
from dataflows.errors import RunFailed, RunNotFound, ScheduleNotFound
from dataflows.intake import event_intake, internal_intake, new_id, start_event
from dataflows.limits import (
    Concurrency,
    Debounce,
    KeyExpr,
    PriorityExpr,
    RateLimit,
    Throttle,
    check_debounce,
    check_duration,
    check_key,
    check_priority,
    check_rate_limit,
    check_throttle,
    coerce_concurrency,
)
from dataflows.models import Run, Schedule, SendResult
from dataflows.names import check_workflow_id
from dataflows.outage import watch_pool_logs
from dataflows.records import FINISHED_STATUSES, BodyKey
from dataflows.retry import RetryPolicy
from dataflows.serialization import DEFAULT_MAX_PAYLOAD, check_event_data
from dataflows.step import WorkflowFn
from dataflows.store import Store, create_store
from dataflows.versions import check_version, code_version
from dataflows.worker import Worker, WorkerOptions
from dataflows.workflow import (
    CronTrigger,
    EventTrigger,
    Registry,
    Trigger,
    Workflow,
    check_cancel_on,
)

# Approvals, the blocking client, exports, webhook sources and cron expressions are imported
# where they are used: a worker process needs none of them until its code does.
if TYPE_CHECKING:
    from dataflows.approvals import ApprovalLinks, ApprovalRequest, ApprovalState
    from dataflows.blocking import BlockingClient
    from dataflows.sources.base import Source


class Dataflows:
    """A dataflows application.

    ``database_url``: argument, else ``DATAFLOWS_DATABASE_URL``, else SQLite at
    ``./.dataflows/dataflows.db``. ``schema`` (PostgreSQL): argument, else ``DATAFLOWS_SCHEMA``,
    else ``dataflows``. The store opens (and migrates, unless ``auto_migrate=False``)
    on first use. Finished runs are deleted ``retention`` after they finish (``None`` keeps them).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        auto_migrate: bool = True,
        clock: Clock | None = None,
        retry: RetryPolicy | int | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        retention: Duration | None = "7d",
        store: Store | None = None,
        secret_key: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = schema or os.environ.get("DATAFLOWS_SCHEMA") or "dataflows"
        self.auto_migrate = auto_migrate
        self.clock: Clock = clock or SystemClock()
        self.default_retry = RetryPolicy.coerce(retry, RetryPolicy())
        self.max_payload = max_payload_bytes
        self.retention = None if retention is None else parse_duration(retention)
        self.registry = Registry()
        self._store = store
        self._opened: asyncio.Task[None] | None = None
        self._blocking: BlockingClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sources: dict[str, Source] = {}
        #: Signs approval links (``DATAFLOWS_SECRET_KEY``); ``dataflows dev`` makes one if unset.
        self.secret_key = secret_key or os.environ.get("DATAFLOWS_SECRET_KEY") or None
        #: Where the HTTP API is reached, for approval links (``DATAFLOWS_PUBLIC_URL``).
        self.public_url = public_url or os.environ.get("DATAFLOWS_PUBLIC_URL") or None
        #: This process's first running worker: events sent here claim runs for it (eager dispatch).
        self.eager_worker: Worker | None = None

    # -- registration --------------------------------------------------------------------------------

    def workflow(
        self,
        id: str,
        *,
        trigger: Trigger | Sequence[Trigger] | None = None,
        retries: RetryPolicy | int | None = None,
        timeout: Duration | None = None,
        example: dict[str, Any] | None = None,
        cancel_on: Sequence[EventTrigger] | None = None,
        concurrency: Concurrency | int | None = None,
        priority: PriorityExpr | None = None,
        start_timeout: Duration | None = None,
        idempotency: KeyExpr | None = None,
        rate_limit: RateLimit | None = None,
        throttle: Throttle | None = None,
        debounce: Debounce | None = None,
        version: str | None = None,
    ) -> Callable[[WorkflowFn], WorkflowFn]:
        """Register an ``async def (event, step)`` function as workflow ``id``.

        ``retries`` is the default retry policy of its steps; ``timeout`` bounds a run's whole
        life, suspensions included (the run fails with ``TimeoutError`` when it passes).
        ``example`` is event data the workflow accepts (a JSON object): ``dataflows dev`` prints
        a request that starts the workflow with it.
        ``cancel_on`` is a list of :func:`on_event` triggers that cancel a run when a matching
        event arrives: ``df.on_event("order/cancelled", match="data.id")`` cancels the run whose
        triggering event has the same ``data.id`` (as ``step.wait_for_event`` matches).

        ``concurrency`` (a :class:`Concurrency`, or a number for the whole workflow): at most
        that many runs execute at once, per key, across every worker; a suspended run holds no
        slot. ``priority`` (a number, or a function of the triggering event): queued runs start
        by priority, higher first, then oldest first. Both are evaluated when a run is created.
        ``start_timeout``: a run that has not started that long after it was created (held
        back by a limit, or no worker running) is cancelled with a ``StartTimeout`` error.
        ``idempotency`` (a dotted path into the event or a function of it): at most one run per
        value within 24 hours; an event that would start another starts none (its send result
        lists the workflow under ``skipped``). ``rate_limit`` (a :class:`RateLimit`): at most
        that many runs per key per period; an event over it starts none (``skipped``, too).
        ``throttle`` (a :class:`Throttle`): at most that many runs per key start within any
        period; the others stay queued and start, oldest first, as the window frees.
        ``debounce`` (a :class:`Debounce`): events with the same key within its period start
        one run, with the last one's data, a period after the last (its send result lists
        the others under ``skipped``: ``debounced into run ID``).
        ``version`` (a non-empty string) is the version each run records when it starts;
        without it, a fingerprint of the function's code (see :mod:`dataflows.versions`).
        """
        check_workflow_id(id)
        limits = coerce_concurrency(id, concurrency)
        check_priority(id, priority)
        if idempotency is not None:
            check_key(id, "idempotency", idempotency)
        rate_period = check_rate_limit(id, rate_limit)
        throttle_period = check_throttle(id, throttle, limits)
        debounce_periods = check_debounce(id, debounce)
        start_within = (
            None if start_timeout is None else check_duration(id, "start_timeout", start_timeout)
        )
        triggers = (
            ()
            if trigger is None
            else ((trigger,) if isinstance(trigger, EventTrigger | CronTrigger) else tuple(trigger))
        )
        for t in triggers:
            if isinstance(t, CronTrigger):
                t.check(id)
            elif isinstance(t, EventTrigger) and t.match is not None:
                raise ValueError(
                    f"workflow {id!r}: trigger {t.name!r} has match=, which only applies in "
                    "cancel_on"
                )
        cancels = check_cancel_on(id, cancel_on)
        given_version = check_version(id, version)
        policy = RetryPolicy.coerce(retries, self.default_retry)
        limit = None if timeout is None else parse_duration(timeout)
        if example is not None:
            check_event_data(example, limit=self.max_payload)

        def register(fn: WorkflowFn) -> WorkflowFn:
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError(f"workflow {id!r} must be an async function")
            self.registry.add(
                Workflow(
                    id,
                    fn,
                    triggers,
                    policy,
                    limit,
                    example,
                    cancel_on=cancels,
                    concurrency=limits,
                    priority=priority,
                    start_timeout=start_within,
                    idempotency=idempotency,
                    rate_limit=rate_limit,
                    rate_period=rate_period,
                    throttle=throttle,
                    throttle_period=throttle_period,
                    debounce=debounce,
                    debounce_periods=debounce_periods,
                    version=given_version or code_version(fn),
                )
            )
            return fn

        return register

    def rate_limit(self, name: str, *, limit: int, period: Duration) -> Budget:
        """Declare a budget shared by every worker: ``limit`` calls per sliding ``period``.

        ``step.run(name, fn, rate_limit="clickup")`` takes one unit just before calling ``fn``;
        without one the run waits (no thread held, no retry attempt spent) until a unit frees.
        ``rate_limit=("clickup", "data.token")`` keeps one budget per value of the triggering
        event's ``data.token`` (or of a callable given the event). The limit holds in the
        database, across every worker process. ``ValueError`` naming the option at fault.
        """
        budget = make_budget(name, limit, period)
        self.registry.add_budget(budget)
        return budget

    def add_source(self, source: Source) -> Source:
        """Enable a webhook source (``POST /hooks/{source.name}``) configured in code.

        Sources can also be enabled from the environment (``DATAFLOWS_{SOURCE}_SECRET``); one
        configured here wins over the environment.
        """
        self.sources[source.name] = source
        return source

    # -- the store -------------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = create_store(self.database_url, schema=self.schema)
        return self._store

    async def open(self) -> None:
        """Open the store (and migrate it unless ``auto_migrate=False``). Safe to call again."""
        opened = self._opened
        if (
            opened is not None
            and opened.done()
            and not opened.cancelled()
            and opened.exception() is None
        ):
            return  # open already: every call of the client API comes through here
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._open())
        try:
            await asyncio.shield(self._opened)
        except BaseException:
            self._opened = None
            raise

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        watch_pool_logs()  # a database outage is logged in a few lines, not one per connection
        await self.store.open(migrate=self.auto_migrate)
        await self.sync_clock()

    async def sync_clock(self) -> None:
        """Align a :class:`SystemClock` with the database server's clock.

        Timers are compared with the engine's clock; aligning every process to the database
        means a timer never fires early because one machine's clock runs ahead (guarantee 6).
        An injected clock (a test's :class:`ManualClock`) is left alone.
        """
        if not isinstance(self.clock, SystemClock):
            return
        samples = []
        for _ in range(3):
            before = time.time()
            server = await self.store.database_time()
            after = time.time()
            samples.append((after - before, server - after))
        # The server read its clock somewhere between `before` and `after`: taking `after` keeps
        # this clock at or behind the database's, so timers can be late by a round trip but
        # never early. The fastest round trip bounds that best.
        self.clock.offset = min(samples)[1]

    def notify_workers_threadsafe(self) -> None:
        """Wake this app's workers from any thread: new work may be runnable."""
        loop, store = self._loop, self._store
        if loop is not None and store is not None and not loop.is_closed():
            loop.call_soon_threadsafe(store.notify_listeners)

    async def close(self) -> None:
        if self._opened is not None:
            self._opened = None
            await self.store.close()
            self._store = None
        if self._blocking is not None:
            self._blocking.close()
            self._blocking = None

    @asynccontextmanager
    async def override(
        self,
        *,
        database_url: str | None = None,
        schema: str | None = None,
        clock: Clock | None = None,
        registry: Registry | None = None,
        auto_migrate: bool | None = None,
    ) -> AsyncIterator[Dataflows]:
        """Run this app on another database, clock, registry or ``auto_migrate`` for the block.

        For tests (``dataflows.testing`` uses it): an app defined once at module level, for
        production, runs its workflows on a throw-away database and a virtual clock. The app
        must be closed when the block starts; it is closed when the block ends, and gets back
        the ones it had. Options left ``None`` are not changed.
        """
        if self._opened is not None or self._blocking is not None:
            raise RuntimeError(
                "app.override() needs a closed app: this one is open (close it first)"
            )
        saved = (
            self.database_url,
            self.schema,
            self.clock,
            self.registry,
            self._store,
            self.auto_migrate,
        )
        if database_url is not None:
            self.database_url, self._store = database_url, None
        if schema is not None:
            self.schema = schema
        if clock is not None:
            self.clock = clock
        if registry is not None:
            self.registry = registry
        if auto_migrate is not None:
            self.auto_migrate = auto_migrate
        try:
            yield self
        finally:
            try:
                await self.close()
            finally:
                (
                    self.database_url,
                    self.schema,
                    self.clock,
                    self.registry,
                    self._store,
                    self.auto_migrate,
                ) = saved
                self.eager_worker = None

    async def __aenter__(self) -> Dataflows:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- client calls ------------------------------------------------------------------------------------

    async def send(
        self,
        name: str,
        data: dict[str, Any],
        *,
        id: str | None = None,
        body: BodyKey | None = None,
    ) -> SendResult:
        """Store an event durably and start the workflows it triggers.

        ``body`` (the HTTP API passes it for webhook sources that sign the body but not the
        delivery id): a body seen already within its window makes this event a duplicate of
        the first one sent with it: that event's id and runs come back, nothing is written.
        """
        return (await self._send([(name, data, id)], body))[0]

    async def send_many(
        self, events: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> list[SendResult]:
        """Store several events, and the runs they start, in one transaction."""
        return await self._send(events)

    async def _send(
        self, events: Sequence[tuple[str, dict[str, Any], str | None]], body: BodyKey | None = None
    ) -> list[SendResult]:
        await self.open()
        now = self.clock.now()
        intakes = [
            event_intake(
                self.registry, name, data, event_id=id, now=now, limit=self.max_payload, body=body
            )
            for name, data, id in events
        ]
        worker = self.eager_worker
        if worker is not None:
            results = await worker.send_events(intakes, now)
        else:
            results = (await self.store.send_events(intakes, now)).results
        for intake, result in zip(intakes, results, strict=True):
            if not result.duplicate:
                metrics.runs_started([run.workflow_id for run in intake.runs])
        # The request (or whatever span is current) links to the traces of the runs it started
        # or resumed.
        tracing.link_current_span(i for r in results for i in (*r.run_ids, *r.resumed_run_ids))
        return [
            SendResult(r.event_id, r.run_ids, r.duplicate, r.resumed_run_ids, r.skipped)
            for r in results
        ]

    # -- approvals -----------------------------------------------------------------------------------

    def approval_links(self) -> ApprovalLinks:
        """The signer of approval links; :class:`MissingSetting` without a secret key."""
        from dataflows.approvals import ApprovalLinks

        return ApprovalLinks(self.secret_key, self.public_url)

    async def decide_approval(
        self,
        approval_id: str,
        approved: bool,
        *,
        by: str | None = None,
        comment: str | None = None,
    ) -> bool:
        """Decide the approval ``approval_id`` (an :attr:`ApprovalRequest.id`): ``True`` if this
        call decided it, ``False`` if it was decided already (nothing is written then).

        The decision is stored once, as an event of the engine's own, and resumes the run's
        ``step.wait_for_approval`` (now, or when the run reaches it). The HTTP API's
        confirmation page calls this after checking the link; call it yourself from trusted
        code only (it does not check ``approvers`` or the expiry: an expired wait has already
        returned ``None``).
        """
        if not isinstance(approval_id, str) or not approval_id:
            raise ValueError("decide_approval needs an approval id")
        from dataflows.approvals import DECIDED_EVENT, decision_event_id

        await self.open()
        now = self.clock.now()
        data = {
            "approval_id": approval_id,
            "approved": approved is True,
            "by": by,
            "comment": comment,
            "at": now,
        }
        intake = internal_intake(
            DECIDED_EVENT,
            data,
            event_id=decision_event_id(approval_id),
            now=now,
            limit=self.max_payload,
        )
        worker = self.eager_worker
        if worker is not None:
            results = await worker.send_events([intake], now)
        else:
            results = (await self.store.send_events([intake], now)).results
        tracing.link_current_span(results[0].resumed_run_ids)
        return not results[0].duplicate

    async def get_approval(self, run_id: str, approval_id: str) -> ApprovalState | None:
        """The request ``approval_id`` of run ``run_id`` with its run's status and its decision
        so far, or ``None`` if there is no such request."""
        from dataflows.approvals import Approval, ApprovalRequest, ApprovalState, decision_event_id

        await self.open()
        row = await self.store.get_run(run_id)
        if row is None:
            return None
        for step in row.steps:
            request = ApprovalRequest.from_json(step.output) if step.kind == "run" else None
            if request is not None and request.id == approval_id:
                event = await self.store.get_event(decision_event_id(approval_id))
                decision = None if event is None else Approval.from_event_data(event.data)
                return ApprovalState(request, row.status, decision)
        return None

    async def pending_approvals(self, limit: int = 100) -> list[ApprovalRequest]:
        """Approvals that runs are waiting for now (``step.wait_for_approval``), oldest first
        (up to ``limit``; those past their expiry are left out)."""
        from dataflows.approvals import DECIDED_EVENT, ApprovalRequest

        await self.open()
        now = self.clock.now()
        pending = []
        for wait in await self.store.event_waits(DECIDED_EVENT, limit):
            for step in wait.history:
                request = ApprovalRequest.from_json(step.output) if step.kind == "run" else None
                if request is None or request.expires_at <= now:
                    continue
                if request.id in wait.filter_key:
                    pending.append(request)
                    break
        return pending

    async def start(
        self,
        workflow_id: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a run of ``workflow_id`` with ``data``; the same ``idempotency_key`` starts it once."""
        workflow = self.registry.get(workflow_id)
        await self.open()
        now = self.clock.now()
        run_id = new_id()
        event = start_event(run_id, data or {}, now=now, limit=self.max_payload)
        started, created = await self.store.start_run(
            workflow.new_run(run_id, event, idempotency_key), now
        )
        if created:
            metrics.runs_started([workflow_id])
        tracing.link_current_span([started])
        return started

    async def get_run(self, run_id: str) -> Run:
        await self.open()
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        return Run.from_row(row)

    async def export_run(self, run_id: str) -> dict[str, Any]:
        """The run's history as JSON data (``format``, ``run``, ``event``, ``steps`` as
        recorded, the engine's own rows included): what ``dataflows runs export`` writes and
        :func:`dataflows.replay.replay` replays against code."""
        from dataflows.replay import export_row

        await self.open()
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        return export_row(row)

    async def wait_for_run(
        self, run_id: str, timeout: Duration | None = None, *, raise_on_failure: bool = False
    ) -> Run:
        """Wait until the run has finished; ``TimeoutError`` after ``timeout``.

        Polls the run's status alone (backing off to every 0.5 s), and reads the whole run, with
        its steps, once it has finished.
        """
        limit = None if timeout is None else parse_duration(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        delay = 0.005
        await self.open()
        while True:
            status = await self.store.run_status(run_id)
            if status is None:
                raise RunNotFound(run_id)
            if status in FINISHED_STATUSES:
                run = await self.get_run(run_id)
                if raise_on_failure and run.status != "completed":
                    raise RunFailed(f"run {run_id} {run.status}: {run.error}")
                return run
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"run {run_id} did not finish within {limit}s")
            pause = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, 0.5)

    async def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Run]:
        """Runs newest first, optionally filtered; page with ``before=(created_at, id)``."""
        await self.open()
        cursor = None if before is None else (before[0].timestamp(), before[1])
        rows = await self.store.list_runs(workflow_id, status, limit, cursor)
        return [Run.from_row(r) for r in rows]

    async def cancel(self, run_id: str) -> str:
        """Cancel the run: it starts no further step. Returns its status afterwards."""
        await self.open()
        return await self.store.cancel_run(run_id, self.clock.now())

    async def cancel_runs(
        self,
        *,
        workflow_id: str | None = None,
        status: str | Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        batch: int = 500,
    ) -> int:
        """Cancel every unfinished run matching the filters, with the children each invoked;
        return how many matching runs were cancelled (children not counted).

        ``status`` is ``queued``, ``running`` or ``waiting``, or a list of them (default: all
        three); ``created_after`` (inclusive) and ``created_before`` (exclusive) bound the
        runs' creation time. At least one filter is required. Runs are cancelled ``batch`` at
        a time, each batch in one transaction, so a huge backlog never makes one huge
        transaction; runs created while it goes on may be cancelled too if they match.
        """
        statuses = check_cancel_filters(workflow_id, status, created_after, created_before)
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch!r}")
        await self.open()
        after = None if created_after is None else created_after.timestamp()
        before = None if created_before is None else created_before.timestamp()
        total = 0
        while True:
            ids = await self.store.cancel_matching(
                workflow_id, statuses, after, before, batch, self.clock.now()
            )
            total += len(ids)
            if len(ids) < batch:
                return total

    async def retry(self, run_id: str) -> str:
        """Run a failed or cancelled run again: recorded results stay, failed steps run again."""
        await self.open()
        return await self.store.retry_run(run_id, self.clock.now())

    async def purge(self, older_than: Duration, batch: int = 500) -> int:
        """Delete finished runs completed more than ``older_than`` ago, in batches."""
        await self.open()
        before = self.clock.now() - parse_duration(older_than)
        total = 0
        while (deleted := await self.store.purge_finished(before, batch)) > 0:
            total += deleted
        return total

    # -- schedules -------------------------------------------------------------------------------------

    async def list_schedules(self) -> list[Schedule]:
        """The schedules (cron triggers) workers keep, by id; each worker writes those of its
        code as it starts."""
        await self.open()
        return [Schedule.from_row(row) for row in await self.store.list_schedules()]

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stop firing the schedule until it is resumed (its ticks meanwhile are skipped). It
        stays paused across deploys. Raises :class:`ScheduleNotFound`."""
        await self.open()
        row = await self.store.pause_schedule(schedule_id, self.clock.now())
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(row)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Fire the schedule again from its next tick (the ticks it missed while paused stay
        skipped). Resuming a schedule that is not paused changes nothing."""
        from dataflows.schedules import CronSchedule

        await self.open()
        row = await self.store.get_schedule(schedule_id)
        if row is None:
            raise ScheduleNotFound(schedule_id)
        now = self.clock.now()
        next_at = CronSchedule(row.expr, row.tz).next_after(now)
        resumed = await self.store.resume_schedule(schedule_id, next_at, now)
        if resumed is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(resumed)

    # -- workers -----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def worker(self, concurrency: int = 10, **options: Any) -> AsyncIterator[Worker]:
        """Run a worker in the current event loop for the duration of the block."""
        worker = Worker(self, WorkerOptions(concurrency=concurrency, **options))
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()

    def run_worker(self, concurrency: int = 10, **options: Any) -> int:
        """Run a worker until SIGTERM or SIGINT, then shut down gracefully.

        A second signal exits at once. Returns 0, or 3 when the worker recycled itself
        (``max_runs`` / ``max_rss_mb``) so a supervisor knows to start a fresh one. If a sync
        step function is still running when the grace period ends, its run has been handed back
        and the process exits with that code at once (``os._exit``) instead of waiting for it.
        """
        return runner.run_worker(self, WorkerOptions(concurrency=concurrency, **options))

    # -- blocking twins ---------------------------------------------------------------------------------

    @property
    def blocking(self) -> BlockingClient:
        """The client calls for synchronous code: ``app.blocking.start(...)`` and so on."""
        if self._blocking is None:
            from dataflows.blocking import BlockingClient

            self._blocking = BlockingClient(self._twin)
        return self._blocking

    def _twin(self) -> Dataflows:
        """A client of the same store and workflows, for the blocking calls' private loop."""
        twin = Dataflows(
            self.database_url,
            schema=self.schema,
            auto_migrate=self.auto_migrate,
            clock=self.clock,
            retry=self.default_retry,
            max_payload_bytes=self.max_payload,
            secret_key=self.secret_key,
            public_url=self.public_url,
        )
        twin.registry = self.registry
        # Tell this app's own workers about work started from there (SQLite has no
        # cross-connection notifications; on PostgreSQL this only shortens the path).
        twin.store.add_listener(self.notify_workers_threadsafe)
        return twin


CANCELLABLE = ("queued", "running", "waiting")


def check_cancel_filters(
    workflow_id: str | None,
    status: str | Sequence[str] | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> list[str]:
    """The statuses a bulk cancel selects; ``ValueError`` for no filter or a bad status."""
    if workflow_id is None and status is None and created_after is None and created_before is None:
        raise ValueError(
            "cancel_runs needs at least one filter: workflow_id, status, created_after or "
            "created_before"
        )
    statuses = (
        list(CANCELLABLE)
        if status is None
        else [status]
        if isinstance(status, str)
        else list(status)
    )
    for s in statuses:
        if s not in CANCELLABLE:
            raise ValueError(
                f"status {s!r} cannot be cancelled: use one of {', '.join(CANCELLABLE)}"
            )
    if not statuses:
        raise ValueError("status: give at least one of " + ", ".join(CANCELLABLE))
    return statuses
