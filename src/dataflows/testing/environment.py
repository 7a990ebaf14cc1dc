"""A test environment: the app on a throw-away store, a worker in the test's loop, virtual time.

``async with environment(app) as env`` runs ``app`` on a fresh SQLite database in a temporary
directory (or a fresh schema of a PostgreSQL database), with a :class:`ManualClock` of its own
and a worker in the current event loop; afterwards the app is closed and gets its database,
clock and workflows back. Every call of the environment returns with the engine at rest: the
worker has executed everything that is due at the current virtual time, and runs that wait for
time or events are suspended in the store, as they would be in production.

In the environment every sleep and retry backoff suspends its run in the store (the worker's
``inline_sleep_limit`` and ``inline_retry_limit`` are 0), so a run waiting for time is always
``waiting`` with its ``wake_at``, and :meth:`Environment.advance` moves the clock from one due
timer to the next, letting the worker finish each before the next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from dataflows.app import Dataflows
from dataflows.approvals import ApprovalRequest
from dataflows.clock import ManualClock
from dataflows.durations import Duration, parse_duration, to_timestamp
from dataflows.models import Run, SendResult, StepInfo, error_line
from dataflows.names import check_step_name
from dataflows.records import FINISHED_STATUSES
from dataflows.testing.mocks import StepMock, with_mocks
from dataflows.testing.render import describe_run, when
from dataflows.worker import Worker
from dataflows.workflow import Registry

#: Stands for "not given" where ``None`` is a value an assertion may expect.
MISSING: Any = object()

#: The events the engine waits for on a run's behalf (a child run finishing): time still matters.
INTERNAL_EVENTS = "event dataflows/"


class RunNotFinished(AssertionError):
    """``env.wait`` gave up: the run waits for something time alone will not bring, or the
    real-time ``timeout`` passed. The message shows the run."""


class EngineBusy(AssertionError):
    """The worker did not come to rest within the environment's ``timeout`` (real seconds)."""


class Environment:
    """The handle a test drives the app with; see :func:`environment`."""

    def __init__(self, app: Dataflows, clock: ManualClock, timeout: float) -> None:
        self.app = app
        self.clock = clock
        #: Real seconds any one call may take to bring the engine to rest.
        self.timeout = timeout
        self._worker: Worker | None = None
        self._mocks: dict[tuple[str | None, str], StepMock] = {}
        self._functions: dict[Callable[..., Any], str] = {}

    # -- setup -----------------------------------------------------------------------------------

    def _registry(self, original: Registry) -> Registry:
        """A copy of the app's workflows whose steps can be mocked."""
        copy = Registry()
        copy.budgets = dict(original.budgets)
        for workflow in original:
            mocked = with_mocks(workflow.fn, self._find_mock)
            self._functions[workflow.fn] = self._functions[mocked] = workflow.id
            copy.add(dataclasses.replace(workflow, fn=mocked))
        return copy

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            raise RuntimeError("the environment is not running (use `async with environment(app)`)")
        return self._worker

    # -- time --------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The virtual time (UTC)."""
        return datetime.fromtimestamp(self.clock.now(), UTC)

    async def advance(self, duration: Duration) -> None:
        """Move virtual time forward by ``duration`` (``"7d"``, ``"1h30m"``, seconds, a
        timedelta), stopping at every timer due on the way (sleeps, retry backoffs, event-wait
        and workflow timeouts, rate limits, cron ticks) so that the worker executes what each
        one wakes, in order, before time goes on. Returns with the engine at rest."""
        seconds = parse_duration(duration)
        if seconds < 0:
            raise ValueError(f"time only moves forward: advance({duration!r})")
        await self.settle()
        target = self.clock.now() + seconds
        while (due := await self._next_due()) is not None and due <= target:
            if due <= self.clock.now():
                break  # due, yet nothing takes it: do not spin (held back by a flow limit)
            self.clock.set(due)
            await self.settle()
        if target > self.clock.now():
            self.clock.set(target)
        await self.settle()

    async def advance_to(self, when: datetime | float) -> None:
        """Move virtual time forward to ``when`` (an aware datetime or a timestamp)."""
        await self.advance(max(0.0, to_timestamp(when) - self.clock.now()))

    async def _next_due(self) -> float | None:
        store = self.app.store
        found = (await store.next_wake_at(), await store.next_schedule_at())
        times = [t for t in found if t is not None]
        return min(times) if times else None

    async def settle(self) -> None:
        """Return once the worker has executed everything due at the current virtual time (the
        calls of the environment do this themselves)."""
        worker = self.worker
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            if worker.idle and not await self._schedules_due():
                seen = worker.claim_rounds
                worker.wake()
                while worker.idle_round <= seen and worker.idle:
                    await self._pause(deadline)
                # A claim begun after the schedules were fired found nothing, and nothing runs.
                if worker.idle_round > seen and worker.idle:
                    return
            else:
                worker.scheduler.wake()
                await self._pause(deadline)

    async def _schedules_due(self) -> bool:
        due = await self.app.store.next_schedule_at()
        return due is not None and due <= self.clock.now()

    async def _pause(self, deadline: float) -> None:
        if asyncio.get_running_loop().time() > deadline:
            running = await self.app.list_runs(status="running", limit=20)
            shown = "\n".join([describe_run(await self.app.get_run(r.id)) for r in running])
            raise EngineBusy(
                f"the worker did not come to rest within {self.timeout}s (real time); "
                "a step function may be blocked (mock it with env.mock_step)"
                + (f"\nruns still running:\n{shown}" if shown else "")
            )
        await asyncio.sleep(0.001)

    # -- runs and events -----------------------------------------------------------------------------

    def workflow_id(self, workflow: str | Callable[..., Any]) -> str:
        """The id of ``workflow``: an id, or the function registered with ``@app.workflow``."""
        if isinstance(workflow, str):
            return workflow
        try:
            return self._functions[workflow]
        except (KeyError, TypeError):
            raise ValueError(f"{workflow!r} is not a workflow of this app") from None

    async def start(
        self,
        workflow: str | Callable[..., Any],
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a run (as ``app.start``) and return its id once the engine is at rest."""
        run_id = await self.app.start(
            self.workflow_id(workflow), data or {}, idempotency_key=idempotency_key
        )
        await self.settle()
        return run_id

    async def send(
        self, name: str, data: dict[str, Any] | None = None, *, id: str | None = None
    ) -> SendResult:
        """Send an event (as ``app.send``): the runs it starts or resumes have gone as far as
        they can at the current virtual time when it returns."""
        result = await self.app.send(name, data or {}, id=id)
        await self.settle()
        return result

    async def decide_approval(
        self,
        run_id: str,
        approved: bool = True,
        *,
        by: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        """Decide the approval run ``run_id`` waits for (``step.wait_for_approval``), as a
        person would from its link; returns the request. The run has gone as far as it can when
        it returns. ``AssertionError`` if the run waits for no approval."""
        pending = [r for r in await self.app.pending_approvals(500) if r.run_id == run_id]
        if not pending:
            run = await self.app.get_run(run_id)
            self._fail(run, f"run {run_id} waits for no approval")
        request = pending[0]
        await self.app.decide_approval(request.id, approved, by=by, comment=comment)
        await self.settle()
        return request

    async def cancel(self, run_id: str) -> str:
        """Cancel a run (as ``app.cancel``); returns its status afterwards."""
        status = await self.app.cancel(run_id)
        await self.settle()
        return status

    async def run(self, run_id: str) -> Run:
        """The run as it is now, with its steps."""
        return await self.app.get_run(run_id)

    async def runs(self, workflow: str | Callable[..., Any] | None = None) -> list[Run]:
        """The runs (of ``workflow``, if given), oldest first, without their steps."""
        workflow_id = None if workflow is None else self.workflow_id(workflow)
        found: list[Run] = []
        before = None
        while page := await self.app.list_runs(workflow_id, limit=500, before=before):
            found += page
            before = (page[-1].created_at, page[-1].id)
        return found[::-1]

    async def steps(self, run_id: str) -> dict[str, StepInfo]:
        """The run's recorded steps by key (``name``, ``name#2`` for its second use …), each
        with its ``status``, ``output``, ``attempts``, ``error`` and ``attempt_errors``."""
        return {step.key: step for step in (await self.run(run_id)).steps}

    async def wait(self, run_id: str, *, advance: bool = True, timeout: float | None = None) -> Run:
        """Return the run once it has finished (completed, failed or cancelled).

        With ``advance=True``, virtual time runs on while the run waits for time alone: a
        sleep, a retry backoff, a rate limit, its workflow's timeout, a child run (``invoke``)
        — from one due timer to the next, everything else due meanwhile happening too, in order.
        A run waiting for an event (``wait_for_event``) is not waited past its event: send the
        event first, or ``env.advance`` past the wait's timeout. :class:`RunNotFinished` (an
        ``AssertionError`` showing the run) when the run cannot finish that way, with
        ``advance=False`` when it has not finished now, or after ``timeout`` real seconds
        (default: the environment's ``timeout``).
        """
        __tracebackhide__ = True
        loop = asyncio.get_running_loop()
        limit = self.timeout if timeout is None else timeout
        deadline = loop.time() + limit
        await self.settle()
        while True:
            run = await self.run(run_id)
            if run.status in FINISHED_STATUSES:
                return run
            if not advance:
                self._not_finished(run, "it has not finished (advance=False)")
            reason = run.wait_reason or ""
            if (
                run.status == "waiting"
                and reason.startswith("event ")
                and not reason.startswith(INTERNAL_EVENTS)
            ):
                self._not_finished(
                    run,
                    f"it waits for an {reason} — send it with env.send(...), or move time past "
                    "the wait's timeout with env.advance(...)",
                )
            due = await self._next_due()
            if due is None or due <= self.clock.now():
                self._not_finished(run, "nothing is due that time could bring")
            if loop.time() > deadline:
                self._not_finished(run, f"it did not finish within {limit}s (real time)")
            assert due is not None
            self.clock.set(due)
            await self.settle()

    def _not_finished(self, run: Run, why: str) -> None:
        __tracebackhide__ = True
        raise RunNotFinished(
            f"run {run.id} is {run.status}, not finished: {why}\n"
            f"virtual time: {when(self.now())}\n{describe_run(run, self.clock.now())}"
        )

    # -- mocks -----------------------------------------------------------------------------------------

    def mock_step(
        self,
        name: str,
        *,
        return_value: Any = None,
        side_effect: Any = None,
        workflow: str | Callable[..., Any] | None = None,
    ) -> StepMock:
        """Replace the function of every ``step.run(name, fn, ...)`` (of ``workflow`` only, if
        given) with a :class:`StepMock`; see there for ``return_value`` and ``side_effect``.
        Mocking a name again replaces its mock; :meth:`unmock_step` brings the function back."""
        check_step_name(name)
        workflow_id = None if workflow is None else self.workflow_id(workflow)
        if workflow_id is not None:
            self.app.registry.get(workflow_id)  # UnknownWorkflow for a typo
        mock = StepMock(
            name, return_value=return_value, side_effect=side_effect, workflow=workflow_id
        )
        self._mocks[(workflow_id, name)] = mock
        return mock

    def unmock_step(self, name: str, *, workflow: str | Callable[..., Any] | None = None) -> None:
        workflow_id = None if workflow is None else self.workflow_id(workflow)
        self._mocks.pop((workflow_id, name), None)

    def _find_mock(self, workflow_id: str, name: str) -> StepMock | None:
        return self._mocks.get((workflow_id, name)) or self._mocks.get((None, name))

    # -- assertions --------------------------------------------------------------------------------

    def _fail(self, run: Run, expected: str) -> None:
        __tracebackhide__ = True
        raise AssertionError(
            f"{expected}\nvirtual time: {when(self.now())}\n{describe_run(run, self.clock.now())}"
        )

    async def assert_status(self, run_id: str, status: str) -> Run:
        __tracebackhide__ = True
        run = await self.run(run_id)
        if run.status != status:
            self._fail(run, f"expected run {run_id} to be {status}, but it is {run.status}")
        return run

    async def assert_completed(self, run_id: str, result: Any = MISSING) -> Run:
        """The run completed (with ``result``, if given); returns it."""
        __tracebackhide__ = True
        run = await self.assert_status(run_id, "completed")
        if result is not MISSING and run.result != result:
            self._fail(run, f"run {run_id} completed with {run.result!r}, expected {result!r}")
        return run

    async def assert_failed(
        self, run_id: str, error: str | type[BaseException] | None = None
    ) -> Run:
        """The run failed; ``error`` is the error's type (a class or its name) or a part of
        ``"Type: message"``. A run failed by a step has the step's error."""
        __tracebackhide__ = True
        run = await self.assert_status(run_id, "failed")
        if error is not None and not _error_matches(run.error, error):
            wanted = error.__name__ if isinstance(error, type) else repr(error)
            self._fail(run, f"run {run_id} failed with {error_line(run.error)}, expected {wanted}")
        return run

    async def assert_cancelled(self, run_id: str) -> Run:
        __tracebackhide__ = True
        return await self.assert_status(run_id, "cancelled")

    async def assert_waiting(
        self, run_id: str, *, for_event: str | None = None, for_step: str | None = None
    ) -> Run:
        """The run is suspended (``waiting``); ``for_event``: for an event of that name;
        ``for_step``: in that step (a sleep, wait, retry … keyed so)."""
        __tracebackhide__ = True
        run = await self.assert_status(run_id, "waiting")
        reason = run.wait_reason or ""
        if for_event is not None and not reason.startswith(f"event {for_event} ("):
            self._fail(run, f"run {run_id} waits for {reason!r}, expected event {for_event!r}")
        if for_step is not None and not (
            reason.endswith(f" {for_step}") or reason.endswith(f"({for_step})")
        ):
            self._fail(run, f"run {run_id} waits for {reason!r}, expected step {for_step!r}")
        return run

    async def assert_step(
        self,
        run_id: str,
        key: str,
        *,
        output: Any = MISSING,
        attempts: int | None = None,
        status: str | None = None,
        error: str | type[BaseException] | None = None,
    ) -> StepInfo:
        """The run recorded step ``key`` (its name, or ``name#2`` …) with the ``status``,
        ``output``, number of ``attempts`` and ``error`` given; returns it."""
        __tracebackhide__ = True
        run = await self.run(run_id)
        found = [s for s in run.steps if s.key == key]
        if not found:
            self._fail(run, f"run {run_id} has no step {key!r}")
        step = found[0]
        wrong = []
        if status is not None and step.status != status:
            wrong.append(f"status {step.status}, expected {status}")
        if output is not MISSING and step.output != output:
            wrong.append(f"output {step.output!r}, expected {output!r}")
        if attempts is not None and step.attempts != attempts:
            wrong.append(f"attempts {step.attempts}, expected {attempts}")
        if error is not None and not _error_matches(step.error, error):
            wanted = error.__name__ if isinstance(error, type) else repr(error)
            got = "no error" if step.error is None else error_line(step.error)
            wrong.append(f"error {got}, expected {wanted}")
        if wrong:
            self._fail(run, f"step {key!r} of run {run_id}: " + "; ".join(wrong))
        return step


def _error_matches(stored: dict[str, Any] | None, expected: str | type[BaseException]) -> bool:
    if stored is None:
        return False
    if isinstance(expected, type):
        return stored.get("type") == expected.__name__
    return stored.get("type") == expected or expected in error_line(stored)


@asynccontextmanager
async def environment(
    app: Dataflows,
    *,
    database_url: str | None = None,
    schema: str | None = None,
    start: datetime | float | None = None,
    concurrency: int = 10,
    timeout: float = 10.0,
) -> AsyncIterator[Environment]:
    """Run ``app`` for a test: throw-away store, in-process worker, virtual time.

    ``database_url``: ``None`` (default) for SQLite in a temporary directory, deleted
    afterwards; a ``postgresql://`` URL to run on PostgreSQL, in ``schema`` or, by default, in
    a fresh schema ``dataflows_test_<random>`` dropped afterwards. ``start``: the virtual time
    at the start (an aware datetime or a timestamp; default the real time now).
    ``concurrency``: the worker's. ``timeout``: real seconds any one call of the environment may
    take to bring the engine to rest before it fails the test (:class:`EngineBusy`).
    """
    if not isinstance(app, Dataflows):
        raise TypeError(f"environment() needs a dataflows.Dataflows app, not {app!r}")
    clock = ManualClock(None if start is None else to_timestamp(start))
    env = Environment(app, clock, timeout)
    scratch: tempfile.TemporaryDirectory[str] | None = None
    drop: str | None = None
    if database_url is None:
        scratch = tempfile.TemporaryDirectory(prefix="dataflows-test-")
        url = f"sqlite:///{scratch.name}/dataflows.db"
    else:
        url = database_url
        if url.startswith(("postgres://", "postgresql://")) and schema is None:
            schema = drop = f"dataflows_test_{secrets.token_hex(6)}"
    try:
        async with (
            app.override(
                database_url=url,
                schema=schema,
                clock=clock,
                registry=env._registry(app.registry),
                auto_migrate=True,  # a fresh database, whatever the app does in production
            ),
            app.worker(
                concurrency,
                poll_interval=0.05,
                inline_sleep_limit=0.0,
                inline_retry_limit=0.0,
                maintenance_interval=3600.0,
                shutdown_grace=timeout,
            ) as worker,
        ):
            env._worker = worker
            try:
                await env.settle()
                yield env
            finally:
                env._worker = None
    finally:
        if drop is not None:
            await _drop_schema(url, drop)
        if scratch is not None:
            scratch.cleanup()


async def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
