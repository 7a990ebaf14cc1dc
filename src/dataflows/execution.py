"""One attempt at a run: replay the workflow function against its history, record new steps.

Replay is the heart of durable execution. Each step call is keyed (``name``, ``name#2`` …); a key
with a recorded outcome returns it without running anything, and the first unrecorded key runs for
real and is committed before the workflow's next line runs. A step that must wait (sleep, event,
long retry backoff) unwinds the workflow with :class:`Suspend`; steps already in flight on other
branches finish and record first; the worker then writes the run back as ``waiting``, or its
outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from inspect import CO_COROUTINE
from types import FunctionType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from dataflows import metrics, serialization, tracing
from dataflows.budgets import wait_reason
from dataflows.clock import Clock
from dataflows.context import _current, log_fields
from dataflows.errors import NonDeterminismError, StepFailed, StoreUnavailable, Suspend
from dataflows.intake import event_intake
from dataflows.models import Event, error_line
from dataflows.names import check_step_name
from dataflows.outage import STORE_OUTAGE
from dataflows.records import (
    ENGINE_KINDS,
    RETRY_MARK,
    ClaimedRun,
    FailedAttempt,
    NewStep,
    NewWait,
    StepRow,
    UnitRequest,
    WaitMatch,
    WaitOutcome,
    lookup,
)
from dataflows.retry import RetryPolicy, retry_delay
from dataflows.store.base import Store
from dataflows.workflow import Registry, Workflow

if TYPE_CHECKING:
    from dataflows.approvals import ApprovalLinks

T = TypeVar("T")

#: Types whose values come back from a JSON round trip as themselves (exactly these types: a
#: subclass, say an enum of str, comes back as its base).
_SCALARS = frozenset({str, int, float, bool, type(None)})

log = logging.getLogger("dataflows.execution")

#: Seconds before a store operation that found the database unreachable is tried again.
_FIRST_RETRY = 0.05

#: Turns of the event loop in a row without a recorded step reached after which a replay with
#: recorded steps still unreached has settled (see :meth:`Execution.begin_new`).
SETTLE_TURNS = 20

#: Seconds before a sleep held in memory is due at which its end is written (fenced), so that
#: the write's round trip does not add to the sleep (see :meth:`Execution._sleep_until`).
SLEEP_WRITE_LEAD = 0.01


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every execution needs from the app and the worker."""

    store: Store
    clock: Clock
    registry: Registry
    executor: Any  # concurrent.futures.Executor for sync step functions
    max_payload: int
    inline_retry_limit: float
    inline_sleep_limit: float
    #: The app's approval link signer (raises ``MissingSetting`` when a setting is missing).
    approval_links: Callable[[], ApprovalLinks] | None = None


def error_json(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        info = {
            "type": exc.error_type,
            "message": exc.error_message,
            "step": exc.step_key,
            "traceback": exc.traceback,
        }
    else:
        info = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
    return json.dumps(info)


async def retry_unavailable(op: Callable[[], Awaitable[T]], delay: float = _FIRST_RETRY) -> T:
    """Call the store until it answers: workers wait out a database outage, never exit or spin.

    Retrying a write is safe because every write is idempotent or fenced by the run's lease. The
    outage is logged in a few lines for the whole process (:data:`~dataflows.outage.STORE_OUTAGE`).
    ``delay``: the pause after the first failure (doubling after each further one, to 5 s).
    """
    while True:
        try:
            result = await op()
        except StoreUnavailable as exc:
            STORE_OUTAGE.unavailable(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            STORE_OUTAGE.available()
            return result


class Execution:
    #: Every new step goes through :meth:`begin_new`, even with no recorded step unreached (a
    #: dry replay stops there).
    stops_at_new_steps = False

    def __init__(
        self, rt: Runtime, claimed: ClaimedRun, workflow: Workflow, history: list[StepRow]
    ) -> None:
        self.rt = rt
        self.run = claimed
        self.workflow = workflow
        self.history = {row.key: row for row in history if row.kind != "cancel"}
        #: Recorded steps of the code the replay has not reached yet, in recorded order (see
        #: :meth:`begin_new`), and how many it has reached (progress, for :meth:`_settle`).
        self._unreached = {row.key: None for row in history if row.kind not in ENGINE_KINDS}
        self._reached = 0
        #: ``step.patched`` calls deciding now: new steps wait for their answers.
        self._patching = 0
        self._patches: set[str] = set()
        #: The workflow's cancel_on watches as recorded: pending waits or resolved ones.
        self.cancel_watches = {row.key: row for row in history if row.kind == "cancel"}
        self._uses: dict[str, int] = {}
        self._keys: set[str] = set()
        self.suspensions: list[tuple[float | None, str]] = []
        self.closing = False
        self._abandoned = False
        self.fatal: NonDeterminismError | None = None
        self._inflight = 0
        #: What :meth:`drain` waits on while steps are in flight (made when it is called).
        self._drained: asyncio.Future[None] | None = None
        #: Sleeps, budget waits and retry backoffs held in memory give up at once.
        self._interrupted = asyncio.Event()
        #: How many sleeps (budget waits, retry backoffs) this run holds in memory right now (a
        #: worker asks about such runs when it is notified: see ``Worker.wake``).
        self.holding = 0
        self._background: set[asyncio.Task[None]] = set()
        #: This attempt's spans, when spans are recorded (see :mod:`dataflows.tracing`).
        self.trace: tracing.RunTrace | None = None
        #: The metrics a completed ``step.run`` updates (looked up at the first).
        self._run_metrics: tuple[metrics.Series, metrics.Series] | None = None
        #: The run holds one of its workflow's concurrency slots: it never sleeps or backs off
        #: in memory (a suspended run holds no slot).
        self.holds_slot = workflow.concurrency is not None

    @property
    def abandoned(self) -> bool:
        """The run is no longer ours (lease lost, cancelled, superseded): no further step."""
        return self._abandoned

    @abandoned.setter
    def abandoned(self, value: bool) -> None:
        self._abandoned = value
        if value:
            self._interrupted.set()

    def interrupt(self) -> None:
        """Sleeps and retry backoffs held in memory suspend the run now instead (the worker is
        stopping)."""
        self._interrupted.set()

    # -- keys and replay checks --------------------------------------------------------------------

    def step_key(self, name: object) -> str:
        """:meth:`next_key` of a step name, checked first (the first time it is used: a name
        used before has passed)."""
        if type(name) is not str or name not in self._uses:
            name = check_step_name(name)
        return self.next_key(name)

    def next_key(self, name: str) -> str:
        """``name`` on first use, then ``name#2``, ``name#3`` … skipping keys already taken in
        this run (a step literally named ``"item#2"``), so two calls never share a key."""
        uses = self._uses.get(name, 0)
        while True:
            uses += 1
            key = name if uses == 1 else f"{name}#{uses}"
            if key not in self._keys:
                break
        self._uses[name] = uses
        self._keys.add(key)
        return key

    def recorded(self, key: str, kind: str) -> StepRow | None:
        """The history row for ``key``, after checking it was recorded as the same kind."""
        self.check_live()
        row = self.history.get(key)
        if row is not None and self._unreached.pop(key, False) is None:
            self._reached += 1
        if (
            row is not None
            and row.kind != kind
            and not (row.status == "retrying" and kind == "run")
        ):
            self.fatal = NonDeterminismError(
                self.run.id,
                key,
                f"recorded as a {row.kind!r} step, now called as {kind!r}",
                (key,),
            )
            raise self.fatal
        return row

    async def begin_new(self, key: str) -> None:
        """Called before a step that is not in the history does anything: raises
        :class:`NonDeterminismError` if the replay diverged (the divergence rule).

        A new step while recorded steps are still unreached is either a change of the code (a
        step renamed, removed, or moved before recorded ones) or a parallel branch that got
        ahead of the others: ``asyncio.gather`` branches replay their recorded steps without
        awaiting anything, so one branch may reach its first new step before another branch
        has even started. The new step therefore waits, doing nothing, while the other branches
        replay: until every recorded step is reached (it then runs), or until the replay
        settles with recorded steps still unreached — :data:`SETTLE_TURNS` turns of the event
        loop in a row in which no recorded step was reached — which is divergence. Recorded
        steps left unreached when the function returns are no divergence (a step removed at
        the end), nor are new steps once every recorded step was reached (steps added after).
        """
        self.check_live()
        if self._unreached:
            await self._settle(for_step=True)
            self.check_live()  # the run unwound meanwhile: the next replay decides
            if self._unreached:
                recorded = tuple(self._unreached)
                shown = ", ".join(repr(k) for k in recorded[:3])
                if len(recorded) > 3:
                    shown += f" and {len(recorded) - 3} more"
                self.fatal = NonDeterminismError(
                    self.run.id,
                    key,
                    f"step {key!r} is new but recorded steps {shown} were not reached",
                    recorded,
                )
                raise self.fatal

    async def _settle(self, *, for_step: bool) -> None:
        """Let the other branches replay until every recorded step is reached or the replay
        settles (no recorded step reached for :data:`SETTLE_TURNS` turns of the event loop).
        A new step also waits while a ``step.patched`` call decides its answer."""
        async with self.tracking():  # an unwinding run waits for this branch's decision
            seen, idle = -1, 0
            while (
                self._unreached
                and idle < SETTLE_TURNS
                and not (self.closing or self.abandoned or self.fatal)
            ):
                if self._reached != seen or (for_step and self._patching):
                    seen, idle = self._reached, 0
                else:
                    idle += 1
                await asyncio.sleep(0)

    async def patched(self, change_id: str) -> bool:
        """``step.patched``: True where this run reaches the change for the first time, False
        where its history shows it passed this point under the code before the change (recorded
        steps remain that the replay has not reached, once the replay settles). The answer is
        recorded (a ``patch`` marker, never shown) and later replays read it back."""
        key = patch_key(change_id)
        if key in self._patches:
            raise ValueError(
                f"step.patched({change_id!r}) was called twice in run {self.run.id!r}: "
                "each change id may be asked once per run"
            )
        self._patches.add(key)
        self.check_live()
        row = self.history.get(key)
        if row is not None:
            return bool(row.output)
        self._patching += 1
        try:
            if self._unreached:
                await self._settle(for_step=False)
            self.check_live()
            answer = not self._unreached
            await self.record_patch(key, answer)
        finally:
            self._patching -= 1
        return answer

    async def record_patch(self, key: str, answer: bool) -> None:
        step = NewStep(key, "patch", "completed", json.dumps(answer), None, 1, self.rt.clock.now())
        async with self.tracking():
            await self.write(
                lambda: self.rt.store.record_step(self.run.lease, step, self.rt.clock.now())
            )

    def pending(self, row: StepRow) -> None:
        """The replay reached ``row``, recorded but not finished (a retrying step, a pending
        sleep or wait): the real run goes on with it; a dry replay stops this branch there."""

    def check_live(self) -> None:
        """No new step starts once the run is unwinding, lost, or failed for divergence."""
        if self.fatal is not None:
            raise self.fatal
        if self.closing or self.abandoned:
            raise Suspend()

    # -- suspension and store writes ------------------------------------------------------------------

    def suspend(self, wake_at: float | None, reason: str) -> NoReturn:
        self.suspensions.append((wake_at, reason))
        raise Suspend()

    def lost(self) -> NoReturn:
        self.abandoned = True
        raise Suspend()

    def tracking(self) -> _Tracking:
        """``async with``: a step (or wait) of this run is in flight; :meth:`drain` waits."""
        return _Tracking(self)

    @property
    def idle(self) -> bool:
        """No step (or wait) of this run is in flight."""
        return self._inflight == 0

    def _busy(self) -> None:
        self._inflight += 1

    def _done(self, _: object = None) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def in_background(self, op: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``op`` alongside the workflow; :meth:`drain` waits for it as for a step."""
        self._busy()
        task = asyncio.get_running_loop().create_task(op())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        """Stop new steps and wait for those in flight to record their outcome."""
        self.closing = True
        self._interrupted.set()
        if self._inflight:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    async def write(self, op: Callable[[], Awaitable[bool]]) -> None:
        if not await retry_unavailable(op):
            self.lost()

    # -- step.run --------------------------------------------------------------------------------------

    async def run_step(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        policy: RetryPolicy,
        timeout: float | None,
        unit: tuple[str, str, int, float] | None = None,
    ) -> Any:
        """``unit``: ``(budget, key, limit, period)`` of the shared budget each attempt takes a
        unit of just before calling ``fn``."""
        row = self.recorded(key, "run")
        attempt = 1
        if row is None:
            if self._unreached or self.stops_at_new_steps:  # else begin_new has nothing to do
                await self.begin_new(key)
        else:
            if row.status == "completed":
                return row.output
            if row.status == "failed":
                raise StepFailed.from_record(key, row.error)
            self.pending(row)
            attempt = row.attempts + 1
            if row.wake_at is not None and row.wake_at > self.rt.clock.now():
                self.suspend(row.wake_at, f"retry {key}")
        # In flight until it returns (``tracking``, written out: every step passes here).
        self._busy()
        try:
            while True:
                grant = None if unit is None else await self._take_unit(key, *unit)
                started = self.rt.clock.now()
                try:
                    if grant is None and self.trace is None:  # no unit to give back, no span
                        value = await self._call(key, attempt, fn, args, timeout)
                        output = serialization.dumps_result(value, key, self.rt.max_payload)
                    else:
                        value, output = await self._attempt(key, attempt, fn, args, timeout, grant)
                except Exception as exc:
                    retry_at = await self._attempt_failed(key, exc, attempt, started, policy)
                    # Held as a short sleep is: a cancel notification (the run no longer ours)
                    # ends it at once and frees the slot; so does the worker stopping, which
                    # suspends the run until its retry instead.
                    if not await self._hold(retry_at):
                        if self.abandoned:
                            raise Suspend() from None
                        self.suspend(retry_at, f"retry {key}")
                    self.check_live()
                    # Still ours? A run cancelled during the backoff makes no further attempt.
                    if not await retry_unavailable(
                        lambda: self.rt.store.holds_lease(self.run.lease)
                    ):
                        self.lost()
                    attempt += 1
                    continue
                await self._record_completed(key, output, attempt, started)
                # What a replay returns: the JSON round trip (a scalar comes back as itself).
                return value if type(value) in _SCALARS else json.loads(output)
        finally:
            self._done()

    async def _attempt(
        self,
        key: str,
        attempt: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        timeout: float | None,
        grant: tuple[int, float] | None,
    ) -> tuple[Any, str]:
        """An attempt in its span, giving back its budget unit once ``fn`` returns: its value
        and that value's JSON."""
        with tracing.step_span(self.trace, "step.run", key, attempt):
            try:
                value = await self._call(key, attempt, fn, args, timeout)
            finally:
                if grant is not None:
                    self._return_unit(*grant)
            return value, serialization.dumps_result(value, key, self.rt.max_payload)

    async def _take_unit(
        self, key: str, budget: str, budget_key: str, limit: int, period: float
    ) -> tuple[int, float]:
        """Take a unit of the budget (its grant id and period), or suspend the run until one
        may be free (a replay asks again; no attempt is counted, and the run holds no slot or
        thread meanwhile). A unit due within a tenth of the period (at most
        ``inline_sleep_limit``) is waited for in memory instead, holding no thread either."""
        request = UnitRequest(budget, budget_key, limit, period, key)
        reason = wait_reason(budget, budget_key, key)
        while True:
            answer = await retry_unavailable(
                lambda: self.rt.store.take_budget_unit(self.run.lease, request, self.rt.clock.now)
            )
            if answer.state == "fenced":
                self.lost()
            if answer.state == "granted":
                assert answer.grant_id is not None  # a grant names its row
                return answer.grant_id, period
            # A unit due very soon (the run asked at its place in line a little early) is
            # waited for in memory, as a short sleep is; else the run suspends until its place.
            wake_at = answer.wake_at
            soon = min(self.rt.inline_sleep_limit, period / 10)
            if wake_at is None or self.holds_slot or wake_at - self.rt.clock.now() > soon:
                self.suspend(wake_at, reason)
            if not await self._hold(wake_at):
                self.suspend(wake_at, reason)
            self.check_live()

    def _return_unit(self, grant_id: int, period: float) -> None:
        """The call returned: the unit's window starts now (recorded alongside the workflow)."""
        now = self.rt.clock.now()
        self.in_background(
            lambda: retry_unavailable(
                lambda: self.rt.store.return_budget_unit(grant_id, period, now)
            )
        )

    async def _attempt_failed(
        self, key: str, exc: Exception, attempt: int, started: float, policy: RetryPolicy
    ) -> float:
        """Record a failed attempt; return when the next attempt may start, to be waited for
        in memory.

        Raises :class:`StepFailed` when the step has failed for good, and suspends the run when
        the backoff is too long to wait in memory.
        """
        error = error_json(exc)
        delay = retry_delay(exc, attempt, policy)
        line = error_line(json.loads(error))
        what = (self.run.id, key, attempt, policy.retries + 1, line)
        fields = log_fields(self.run.id, self.workflow.id, key, attempt, line)
        if delay is None:
            last = "no retries left" if attempt > policy.retries else "not retried"
            log.error(
                "step failed: run=%s step=%s attempt=%d/%d error=%s (%s)", *what, last, extra=fields
            )
            await self._record(key, "run", "failed", None, error, attempt, started)
            raise StepFailed.from_record(key, json.loads(error)) from exc
        pause = f"{delay:.1f}s" if delay >= 0.1 else f"{delay * 1000:.0f}ms"
        log.warning(
            "step failed: run=%s step=%s attempt=%d/%d error=%s (retrying in %s)",
            *what,
            pause,
            extra=fields,
        )
        retry_at = self.rt.clock.now() + delay
        await self.write(
            lambda: self.rt.store.record_attempt(
                self.run.lease,
                FailedAttempt(key, attempt, error, started, retry_at),
                self.rt.clock.now(),
            )
        )
        if delay > self.rt.inline_retry_limit or self.holds_slot:
            self.suspend(retry_at, f"retry {key}")
        return retry_at

    async def _call(
        self,
        key: str,
        attempt: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        timeout: float | None,
    ) -> Any:
        token = _current.set((self.run.id, key, attempt, self.workflow.id))
        try:
            if _is_coroutine_function(fn):
                pending: Awaitable[Any] = fn(*args)
            else:
                loop = asyncio.get_running_loop()
                ctx = contextvars.copy_context()
                pending = loop.run_in_executor(self.rt.executor, ctx.run, fn, *args)
            value = await (pending if timeout is None else asyncio.wait_for(pending, timeout))
            if type(value) not in _SCALARS and inspect.isawaitable(value):
                # a sync callable that returned a coroutine
                value = await _with_timeout(value, timeout)
            return value
        finally:
            _current.reset(token)

    async def _record(
        self,
        key: str,
        kind: str,
        status: str,
        output: str | None,
        error: str | None,
        attempts: int,
        started: float,
        event_id: str | None = None,
    ) -> None:
        step = NewStep(key, kind, status, output, error, attempts, started, event_id)  # type: ignore[arg-type]
        await self.write(
            lambda: self.rt.store.record_step(self.run.lease, step, self.rt.clock.now())
        )
        metrics.step_outcomes(self.workflow.id, kind, status).inc()
        if status == "completed":
            metrics.step_durations(self.workflow.id).observe(self.rt.clock.now() - started)

    async def _record_completed(self, key: str, output: str, attempts: int, started: float) -> None:
        """:meth:`_record` of a ``step.run`` that returned: the hot path of every run, so the
        store is called directly, and only an outage goes through :func:`retry_unavailable`."""
        step = NewStep(key, "run", "completed", output, None, attempts, started)
        store, clock = self.rt.store, self.rt.clock
        try:
            recorded = await store.record_step(self.run.lease, step, clock.now())
        except StoreUnavailable as exc:
            STORE_OUTAGE.unavailable(exc)
            await asyncio.sleep(_FIRST_RETRY)
            recorded = await retry_unavailable(
                lambda: store.record_step(self.run.lease, step, clock.now()), 2 * _FIRST_RETRY
            )
        else:
            STORE_OUTAGE.available()
        if not recorded:
            self.lost()
        if self._run_metrics is None:
            self._run_metrics = (
                metrics.step_outcomes(self.workflow.id, "run", "completed"),
                metrics.step_durations(self.workflow.id),
            )
        completed, durations = self._run_metrics
        completed.inc()
        durations.observe(clock.now() - started)

    # -- sleeps and waits ------------------------------------------------------------------------------

    async def sleep_step(self, key: str, wake_at: float) -> None:
        row = self.recorded(key, "sleep")
        if row is not None and row.status == "completed":
            return
        if row is None:
            await self.begin_new(key)
        else:
            self.pending(row)
        with tracing.step_span(
            self.trace, "step.sleep", key, attributes={"dataflows.wake_at": wake_at}
        ):
            await self._sleep(key, wake_at, row)

    async def _sleep(self, key: str, wake_at: float, row: StepRow | None) -> None:
        started = self.rt.clock.now()
        if row is not None and row.wake_at is not None and row.wake_at > started:
            await self._sleep_until(key, row.wake_at, row.started_at or started)
            return
        outcome = await self._begin_wait(key, "sleep", wake_at, None)
        if outcome.state != "resolved":
            await self._sleep_until(key, outcome.wake_at, started)

    async def _sleep_until(self, key: str, wake_at: float | None, started: float) -> None:
        """Wait out a pending sleep whose wake time is recorded: in memory if it is due within
        ``inline_sleep_limit`` (the run keeps its lease and slot), else by suspending the run.
        A run of a workflow with a concurrency limit always suspends: it gives its slot back.

        A sleep held in memory gives up and suspends the run when the run unwinds, is lost or
        the worker stops. The recorded wake time is the truth either way: once it has passed, a
        replay treats the sleep as elapsed, so the code after the sleep goes on at once and the
        sleep's step is recorded alongside.
        """
        reason = f"sleep {key}"
        if (
            wake_at is None
            or self.holds_slot
            or wake_at - self.rt.clock.now() > self.rt.inline_sleep_limit
        ):
            self.suspend(wake_at, reason)
        async with self.tracking():  # an unwinding run waits for this branch's suspension
            held = await self._hold(wake_at - SLEEP_WRITE_LEAD)
            if not held:
                self.suspensions.append((wake_at, reason))
        if not held:
            raise Suspend()
        # Recorded, fenced, before the code after the sleep runs: a run cancelled (or taken
        # over) during the sleep is refused here and starts no further step. The write starts
        # SLEEP_WRITE_LEAD before the wake time, so that its round trip (slow after an idle
        # wait) does not make the sleep late; it records the wake time as the sleep's end, so
        # a replay after a crash in between never ends the sleep early. A cancel arriving in
        # that last moment counts as arriving just after the sleep.
        step = NewStep(key, "sleep", "completed", "null", None, 1, started)
        async with self.tracking():
            await self._record_elapsed(step, ended=wake_at)
            if (left := wake_at - self.rt.clock.now()) > 0:
                await self.rt.clock.sleep(left)
        self.check_live()

    async def _hold(self, wake_at: float) -> bool:
        """Wait until ``wake_at`` by the clock; False if interrupted first."""
        self.holding += 1
        try:
            return await self._hold_until(wake_at)
        finally:
            self.holding -= 1

    async def _hold_until(self, wake_at: float) -> bool:
        clock = self.rt.clock
        while not self._interrupted.is_set() and (left := wake_at - clock.now()) > 0:
            timer = asyncio.ensure_future(clock.sleep(left))
            interrupted = asyncio.ensure_future(self._interrupted.wait())
            try:
                await asyncio.wait((timer, interrupted), return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                interrupted.cancel()
        return not self._interrupted.is_set()

    async def _record_elapsed(self, step: NewStep, ended: float = 0.0) -> None:
        recorded = await retry_unavailable(
            lambda: self.rt.store.record_step(self.run.lease, step, max(self.rt.clock.now(), ended))
        )
        if not recorded:
            self.abandoned = True  # the next step, or the outcome, is fenced too

    async def wait_step(
        self, key: str, match: WaitMatch, deadline: float | None, kind: str = "wait"
    ) -> dict[str, Any] | None:
        """The matching event as stored (``id``, ``name``, ``data``, ``ts``), or ``None``."""
        row = self.recorded(key, kind)
        if row is not None and row.status == "completed":
            output: dict[str, Any] | None = row.output
            return output
        if row is None:
            await self.begin_new(key)
        else:
            self.pending(row)
        if kind == "invoke":  # step.invoke's own span covers it
            return await self._wait(key, match, deadline, kind)
        attributes = {"dataflows.event_name": match.event_name}
        with tracing.step_span(self.trace, "step.wait_for_event", key, attributes=attributes):
            return await self._wait(key, match, deadline, kind)

    async def _wait(
        self, key: str, match: WaitMatch, deadline: float | None, kind: str
    ) -> dict[str, Any] | None:
        outcome = await self._begin_wait(key, kind, deadline, match)
        if outcome.state == "resolved":
            if outcome.event is None:
                return None
            ev = outcome.event
            return {"id": ev.id, "name": ev.name, "data": ev.data, "ts": ev.ts}
        self.suspend(outcome.wake_at, f"event {match.event_name} ({key})")

    async def _begin_wait(
        self,
        key: str,
        kind: str,
        wake_at: float | None,
        match: WaitMatch | None,
        since: float | None = None,
    ) -> WaitOutcome:
        """Reach a wait; an event wait matches events received from ``since`` on (default: the
        run's creation)."""
        since = self.run.created_at if since is None else since
        async with self.tracking():
            outcome = await retry_unavailable(
                lambda: self.rt.store.begin_wait(
                    self.run.lease,
                    NewWait(key, kind, wake_at, match, since, self.run.event.id),
                    self.rt.clock.now(),
                )
            )
        if outcome.state == "fenced":
            self.lost()
        return outcome

    async def record_version(self) -> None:
        """Record the version of the code this run starts with (kept if it has one)."""
        await retry_unavailable(
            lambda: self.rt.store.set_run_version(self.run.lease, self.workflow.version)
        )

    # -- cancel_on -------------------------------------------------------------------------------------

    async def watch_cancel(self) -> None:
        """Register the workflow's ``cancel_on`` watches, once per run (a claim that finds them
        registered costs nothing): each is a wait of kind ``cancel`` whose resolution by event
        intake cancels the run in the intake's transaction. A matching event that came since
        the run was created resolves it here: the run is cancelled and this attempt stops.

        After a retry (``app.retry``), the watches are registered again and look only at events
        received since the retry (its mark's time): the event that cancelled the run, or any
        that came while it was cancelled or failed, does not cancel it again."""
        mark = self.cancel_watches.get(RETRY_MARK)
        since = None if mark is None else max(self.run.created_at, mark.completed_at or 0.0)
        for index, trigger in enumerate(self.workflow.cancel_on):
            key = cancel_key(index)
            row = self.cancel_watches.get(key)
            if row is None:
                filters: tuple[tuple[str, Any], ...] = ()
                if trigger.match is not None:
                    found, value = lookup(dict(self.run.event.data), trigger.match)
                    if not found:  # the triggering event has no such field: nothing to match
                        continue
                    filters = ((trigger.match, value),)
                match = WaitMatch(trigger.name, filters)
                outcome = await self._begin_wait(key, "cancel", None, match, since)
                if outcome.state != "resolved":
                    continue
            elif row.status != "completed":
                continue
            # Resolved, and not cancelled by intake: an event stored before the watch was.
            await retry_unavailable(
                lambda: self.rt.store.cancel_run(self.run.id, self.rt.clock.now())
            )
            self.lost()

    # -- events and child runs ---------------------------------------------------------------------------

    async def send_step(self, key: str, name: str, data: Any, event_id: str | None) -> str:
        row = self.recorded(key, "send")
        if row is not None and row.status == "completed":
            return str(row.output)
        await self.begin_new(key)
        now = self.rt.clock.now()
        intake = event_intake(
            self.rt.registry,
            name,
            data,
            event_id=event_id or f"{self.run.id}:{key}",
            now=now,
            limit=self.rt.max_payload,
        )
        output = json.dumps(intake.event.id)
        step = NewStep(key, "send", "completed", output, None, 1, now, sends=(intake,))
        started = [run.id for run in intake.runs]
        span = tracing.step_span(self.trace, "step.send_event", key, links=started)
        async with self.tracking():
            with span:
                await self.write(
                    lambda: self.rt.store.record_step(self.run.lease, step, self.rt.clock.now())
                )
        metrics.step_outcomes(self.workflow.id, "send", "completed").inc()
        metrics.runs_started([run.workflow_id for run in intake.runs])
        return intake.event.id


class _Tracking:
    """:meth:`Execution.tracking`: a plain context manager, not a generator (every step enters
    one)."""

    __slots__ = ("_x",)

    def __init__(self, execution: Execution) -> None:
        self._x = execution

    async def __aenter__(self) -> None:
        self._x._busy()

    async def __aexit__(self, *exc: object) -> None:
        self._x._done()


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, answered at once for a plain function."""
    if type(fn) is FunctionType:
        return bool(fn.__code__.co_flags & CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


async def _with_timeout(pending: Awaitable[T], timeout: float | None) -> T:
    if timeout is None:
        return await pending
    return await asyncio.wait_for(pending, timeout)


def patch_key(change_id: str) -> str:
    """The step key of the ``step.patched(change_id)`` marker: like :func:`cancel_key`, it
    never meets a step of the code."""
    return f"\x1fpatched:{check_step_name(change_id)}"


def cancel_key(index: int) -> str:
    """The step key of a workflow's ``index``-th ``cancel_on`` watch. A step name cannot hold
    the control character it starts with, so it never meets a step of the code."""
    return f"\x1fcancel_on:{index}"


def wait_event_value(stored: dict[str, Any] | None) -> Event | None:
    return None if stored is None else Event.from_json(stored)
