"""A :class:`Store` over SQL: every domain operation is a program run in one transaction.

Each method hands the program of its operation (from the module named after its noun) to the
backend's :meth:`SqlStore._run`; the hot paths send a single statement without a transaction
around it, and new step results, lone events and starts go through group commit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from dataflows.records import (
    ClaimedRun,
    ClaimRequest,
    EventIntake,
    EventWait,
    FailedAttempt,
    FlowLimit,
    IntakeResult,
    Lease,
    NewRun,
    NewSchedule,
    NewStep,
    NewWait,
    RunOutcome,
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
from dataflows.store import budgets, events, flow_limits, leases, runs, schedules, steps, waits
from dataflows.store.base import Store
from dataflows.store.batching import Batcher
from dataflows.store.events import Intake, Sending
from dataflows.store.program import Program, Query, single


class SqlStore(Store):
    """Backends implement :meth:`_run`: execute a program's queries in one transaction; and
    say how their dialect takes in events (:attr:`intake`)."""

    intake: ClassVar[Intake]

    def __init__(self) -> None:
        super().__init__()
        self._steps: Batcher[Query, int] = Batcher(self._record_batch)
        self._intake_batcher: Batcher[Sending, SentEvents] = Batcher(self._intake_batch)
        self._sending_steps: Batcher[tuple[Lease, NewStep, float], bool] = Batcher(
            self._sending_batch
        )
        #: Transactions that recorded steps sending events (batches; tests read it).
        self.sending_batches = 0
        self._starts: Batcher[tuple[NewRun, float], tuple[str, bool] | Exception] = Batcher(
            self._start_batch
        )
        #: Transactions that started runs for ``start_run`` (batches; tests read it).
        self.start_batches = 0
        self._budget_gates = budgets.Gates()

    @abc.abstractmethod
    async def _run(self, program: Program) -> Any:
        """Run ``program`` in one transaction and return its result."""

    async def _record_batch(self, queries: Sequence[Query]) -> list[int]:
        """Record several new steps (``record_step`` queries) in one transaction; row counts."""
        if len(queries) == 1:
            return [int(await self._run_one(queries[0]))]
        rows = await self._run_one(steps.record_steps_query(queries))
        return steps.record_steps_counts(queries, rows)

    async def _run_single(self, program: Program) -> Any:
        """Run a program that sends exactly one statement (a read, a claim) without a
        transaction around it: one round trip instead of three."""
        query = next(program)
        answer = await self._run_one(query)
        try:
            program.send(answer)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError(f"program {query.name!r} sent more than one statement")

    async def _run_one(self, query: Query) -> Any:
        """Run a single statement. Backends may send it alone, in autocommit: one round trip."""
        return await self._run(single(query))

    async def send_events(
        self, intakes: Sequence[EventIntake], now: float, claim: ClaimRequest | None = None
    ) -> SentEvents:
        if len(intakes) == 1:
            # Concurrent single events (webhooks, app.send) share one transaction.
            return await self._intake_batcher.submit(Sending(intakes[0], now, claim))
        items = [
            Sending(intake, now, claim if n == 0 else None) for n, intake in enumerate(intakes)
        ]
        sent = await self._intake_batch(items)
        return SentEvents(
            [r for s in sent for r in s.results], [c for s in sent for c in s.claimed]
        )

    async def _intake_batch(self, items: Sequence[Sending]) -> list[SentEvents]:
        """Store ``items`` in one transaction. Claims nothing: stores that claim at intake
        override this."""
        results: list[IntakeResult] = await self._run(events.send(self.intake, items))
        return [SentEvents([result]) for result in results]

    async def start_run(self, run: NewRun, now: float) -> tuple[str, bool]:
        # Concurrent starts (app.start) share one transaction: one multi-row insert.
        result = await self._starts.submit((run, now))
        if isinstance(result, Exception):
            raise result
        return result

    async def _start_batch(
        self, items: Sequence[tuple[NewRun, float]]
    ) -> list[tuple[str, bool] | Exception]:
        """Start ``items`` in one transaction."""
        self.start_batches += 1
        return await self._write_starts(items)

    async def _write_starts(
        self, items: Sequence[tuple[NewRun, float]]
    ) -> list[tuple[str, bool] | Exception]:
        """Per item, ``(run_id, created)`` or the exception it alone raised; a lone start runs
        the one-run program."""
        if len(items) == 1:
            run, now = items[0]
            try:
                return [await self._run(runs.start_run(run, now))]
            except RuntimeError as exc:
                return [exc]
        result: list[tuple[str, bool] | Exception] = await self._run(runs.start_runs(items))
        return result

    async def claim_runs(
        self, worker_id: str, limit: int, lease_seconds: float, now: float
    ) -> list[ClaimedRun]:
        result: list[ClaimedRun] = await self._run_single(
            leases.claim_runs(worker_id, limit, lease_seconds, now)
        )
        return result

    async def heartbeat(
        self, worker_id: str, run_ids: Sequence[str], lease_seconds: float, now: float
    ) -> set[str]:
        result: set[str] = await self._run_single(
            leases.heartbeat(worker_id, run_ids, lease_seconds, now)
        )
        return result

    async def load_history(self, run_id: str) -> list[StepRow]:
        result: list[StepRow] = await self._run_single(steps.load_history(run_id))
        return result

    async def record_step(self, lease: Lease, step: NewStep, now: float) -> bool:
        if step.sends:
            # Concurrent steps that send events (step.send_event) share one transaction.
            return await self._sending_steps.submit((lease, step, now))
        # The hot path: a new step result is one fenced INSERT, one round trip (the steps of
        # concurrent runs share it).
        query = steps.record_step_query(lease, step, now)
        if await (self._steps.submit(query) if step.kind == "run" else self._run_one(query)):
            return True
        # Nothing inserted: fenced, or a retry of a record whose answer was lost. The program
        # below tells the two apart (rare, so its extra round trips do not matter).
        return bool(await self._run(steps.record_step(lease, step, now)))

    async def _sending_batch(self, items: Sequence[tuple[Lease, NewStep, float]]) -> list[bool]:
        self.sending_batches += 1
        recorded: list[bool] = await self._run(steps.record_steps_sending(items, self.intake))
        return recorded

    async def record_attempt(self, lease: Lease, attempt: FailedAttempt, now: float) -> bool:
        return bool(await self._run(steps.record_attempt(lease, attempt, now)))

    async def begin_wait(self, lease: Lease, wait: NewWait, now: float) -> WaitOutcome:
        result: WaitOutcome = await self._run(waits.begin_wait(lease, wait, now))
        return result

    async def suspend_run(
        self, lease: Lease, wake_at: float | None, reason: str, now: float
    ) -> bool:
        changed = bool(await self._run_single(leases.suspend_run(lease, wake_at, reason, now)))
        if changed:
            self.notify_listeners()  # the run may be queued again, or need a timer
        return changed

    async def complete_run(
        self, lease: Lease, result_json: str, now: float, *, has_parent: bool = True
    ) -> bool:
        outcome = RunOutcome("completed", result_json=result_json)
        return await self._finish(runs.finish_run(lease, outcome, now, self.intake), has_parent)

    async def fail_run(
        self, lease: Lease, error_json: str, now: float, *, has_parent: bool = True
    ) -> bool:
        outcome = RunOutcome("failed", error_json=error_json)
        return await self._finish(runs.finish_run(lease, outcome, now, self.intake), has_parent)

    async def _finish(self, program: Program, has_parent: bool) -> bool:
        # Without a parent to tell, finishing is one statement: no transaction around it.
        return bool(await (self._run(program) if has_parent else self._run_single(program)))

    async def still_held(self, worker_id: str, run_ids: Sequence[str]) -> set[str]:
        result: set[str] = await self._run_single(leases.still_held(worker_id, run_ids))
        return result

    async def holds_lease(self, lease: Lease) -> bool:
        return bool(await self._run_single(leases.holds_lease(lease)))

    async def release_run(self, lease: Lease, now: float) -> bool:
        return bool(await self._run(leases.release_run(lease, now)))

    async def next_wake_at(self) -> float | None:
        result: float | None = await self._run_single(leases.next_wake_at())
        return result

    async def get_run(self, run_id: str) -> RunRow | None:
        result: RunRow | None = await self._run(runs.get_run(run_id))
        return result

    async def unfinished_runs(
        self, after: str, limit: int, workflow_id: str | None = None
    ) -> list[UnfinishedRun]:
        result: list[UnfinishedRun] = await self._run(
            runs.unfinished_runs(after, limit, workflow_id)
        )
        return result

    async def set_run_version(self, lease: Lease, version: str) -> bool:
        return bool(await self._run_single(runs.set_run_version(lease, version)))

    async def get_event(self, event_id: str) -> StoredEvent | None:
        result: StoredEvent | None = await self._run_single(runs.get_event(event_id))
        return result

    async def recent_events(
        self, limit: int, before_seq: int | None = None
    ) -> list[tuple[int, StoredEvent]]:
        result: list[tuple[int, StoredEvent]] = await self._run_single(
            runs.recent_events(limit, before_seq)
        )
        return result

    async def record_webhook_rejection(self, rejection: WebhookRejection, keep: int) -> None:
        await self._run(runs.record_webhook_rejection(rejection, keep))

    async def recent_webhook_rejections(
        self, limit: int, before_seq: int | None = None
    ) -> list[WebhookRejection]:
        result: list[WebhookRejection] = await self._run_single(
            runs.recent_webhook_rejections(limit, before_seq)
        )
        return result

    async def run_waits(
        self, run_id: str
    ) -> list[tuple[str, str, str | None, str | None, str | None, float | None]]:
        result: list[
            tuple[str, str, str | None, str | None, str | None, float | None]
        ] = await self._run_single(runs.run_waits(run_id))
        return result

    async def runs_of_event(self, event_id: str, limit: int) -> list[tuple[str, str, str, str]]:
        result: list[tuple[str, str, str, str]] = await self._run_single(
            runs.runs_of_event(event_id, limit)
        )
        return result

    async def event_waits(self, event_name: str, limit: int) -> list[EventWait]:
        result: list[EventWait] = await self._run(runs.event_waits(event_name, limit))
        return result

    async def run_status(self, run_id: str) -> str | None:
        result: str | None = await self._run_single(runs.run_status(run_id))
        return result

    async def list_runs(
        self,
        workflow_id: str | None,
        status: str | None,
        limit: int,
        before: tuple[float, str] | None = None,
    ) -> list[RunRow]:
        result: list[RunRow] = await self._run_single(
            runs.list_runs(workflow_id, status, limit, before)
        )
        return result

    async def cancel_run(self, run_id: str, now: float) -> str:
        return str(await self._run(runs.cancel_run(run_id, now, self.intake)))

    async def cancel_matching(
        self,
        workflow_id: str | None,
        statuses: Sequence[str],
        created_after: float | None,
        created_before: float | None,
        batch: int,
        now: float,
    ) -> list[str]:
        result: list[str] = await self._run(
            runs.cancel_matching(
                workflow_id, statuses, created_after, created_before, batch, now, self.intake
            )
        )
        return result

    async def cancel_unstarted(self, now: float, batch: int = 100) -> list[str]:
        result: list[str] = await self._run(runs.cancel_unstarted(now, self.intake, batch))
        return result

    async def retry_run(self, run_id: str, now: float) -> str:
        return str(await self._run(runs.retry_run(run_id, now)))

    async def run_counts(self) -> list[tuple[str, str, int]]:
        result: list[tuple[str, str, int]] = await self._run_single(runs.run_counts())
        return result

    async def sync_flow_limits(self, limits: Sequence[FlowLimit], now: float) -> None:
        await self._run(flow_limits.sync_flow_limits(limits, now))

    async def held_counts(self) -> list[tuple[str, str, int]]:
        result: list[tuple[str, str, int]] = await self._run_single(flow_limits.held_counts())
        return result

    async def list_flow_limits(self) -> list[FlowLimit]:
        result: list[FlowLimit] = await self._run_single(flow_limits.list_flow_limits())
        return result

    async def sync_schedules(self, new: Sequence[NewSchedule], now: float) -> None:
        await self._run(schedules.sync_schedules(new, now))

    async def list_schedules(self) -> list[ScheduleRow]:
        result: list[ScheduleRow] = await self._run_single(schedules.list_schedules())
        return result

    async def get_schedule(self, schedule_id: str) -> ScheduleRow | None:
        result: ScheduleRow | None = await self._run_single(schedules.get_schedule(schedule_id))
        return result

    async def due_schedules(self, now: float) -> list[ScheduleRow]:
        result: list[ScheduleRow] = await self._run_single(schedules.due_schedules(now))
        return result

    async def next_schedule_at(self) -> float | None:
        result: float | None = await self._run_single(schedules.next_schedule_at())
        return result

    async def advance_schedule(
        self, schedule_id: str, expected: float, next_at: float, now: float
    ) -> bool:
        return bool(
            await self._run_single(schedules.advance_schedule(schedule_id, expected, next_at, now))
        )

    async def pause_schedule(self, schedule_id: str, now: float) -> ScheduleRow | None:
        result: ScheduleRow | None = await self._run(schedules.pause_schedule(schedule_id, now))
        return result

    async def resume_schedule(
        self, schedule_id: str, next_at: float, now: float
    ) -> ScheduleRow | None:
        result: ScheduleRow | None = await self._run(
            schedules.resume_schedule(schedule_id, next_at, now)
        )
        return result

    async def take_budget_unit(
        self, lease: Lease, request: UnitRequest, clock: Callable[[], float]
    ) -> UnitAnswer:
        async def ask(takers: Sequence[tuple[Lease, UnitRequest]]) -> list[UnitAnswer]:
            result: list[UnitAnswer] = await self._run(budgets.take_budget_units(takers, clock))
            return result

        return await self._budget_gates.take(lease, request, ask)

    async def rate_limited_waits(self) -> list[tuple[str, int]]:
        result: list[tuple[str, int]] = await self._run_single(budgets.rate_limited_waits())
        return result

    async def return_budget_unit(self, grant_id: int, period: float, now: float) -> None:
        await self._run_single(budgets.return_budget_unit(grant_id, period, now))

    async def purge_finished(self, before: float, batch: int) -> int:
        return int(await self._run(runs.purge_finished(before, batch)))
