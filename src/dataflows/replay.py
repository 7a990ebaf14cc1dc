"""Dry replay: a run's history against the code of an app, without calling any step function.

Recorded steps return their stored results, exactly as in a worker's replay; the first step that
is not recorded ends the replay as compatible unless it is divergent by the rule of
:meth:`dataflows.execution.Execution.begin_new` (recorded steps left unreached once the replay
settles), and so does a recorded step that is still in progress (a retrying step, a pending sleep
or wait): the real run goes on from there. Nothing is written and no step function, sleep, wait,
send or child run happens. ``dataflows check`` dry-replays every unfinished run this way
(:func:`check_runs`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dataflows.clock import Clock, SystemClock
from dataflows.errors import NonDeterminismError, Suspend, UnknownWorkflow
from dataflows.execution import SETTLE_TURNS, Execution, Runtime
from dataflows.models import Event
from dataflows.records import ClaimedRun, RunRow, StepRow, StoredEvent, UnfinishedRun
from dataflows.step import Step
from dataflows.store.base import Store
from dataflows.workflow import Registry

#: How long one run's dry replay may take before it is reported (workflow code that awaits
#: something other than steps, forever).
REPLAY_TIMEOUT = 10.0

#: Runs read from the store per page (keyset pagination), and dry-replayed together.
PAGE_SIZE = 1000

Outcome = Literal["compatible", "diverged", "error"]


class ReplayEnd(BaseException):
    """A branch of a dry replay reached where the real run would go on (a new step, a step in
    progress): it stops there. A ``BaseException``, so workflow code cannot catch it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The dry replay of one run: ``compatible``, ``diverged`` (``step`` is the step asked for,
    ``recorded`` the recorded steps it was compared with) or ``error`` (the code raised, or
    did not reach a step in time); ``detail`` says what happened in words."""

    run_id: str
    workflow_id: str
    outcome: Outcome
    step: str | None = None
    recorded: tuple[str, ...] = ()
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "outcome": self.outcome,
            "step": self.step,
            "recorded": list(self.recorded),
            "detail": self.detail,
        }


class _NoStore:
    """A dry replay writes nothing: any use of the store is a bug, said plainly."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"a dry replay does not use the store (asked for {name!r})")


class DryExecution(Execution):
    """An execution that stops each branch where the real run would do something."""

    stops_at_new_steps = True

    async def begin_new(self, key: str) -> None:
        await super().begin_new(key)  # NonDeterminismError when divergent
        raise ReplayEnd()

    def pending(self, row: StepRow) -> None:
        raise ReplayEnd()

    async def record_patch(self, key: str, answer: bool) -> None:
        return None  # decided as the real run would decide it; not written

    async def settled(self) -> None:
        """Wait until the branches still running have stopped: no step in flight and no
        recorded step reached for :data:`SETTLE_TURNS` turns of the event loop. Once every
        recorded step is reached and no step waits, nothing can diverge any more."""
        seen, idle = -1, 0
        while idle < SETTLE_TURNS and self.fatal is None and (self._unreached or not self.idle):
            if self._reached != seen or not self.idle:
                seen, idle = self._reached, 0
            else:
                idle += 1
            await asyncio.sleep(0)


def dry_runtime(registry: Registry, clock: Clock | None = None) -> Runtime:
    """A runtime for dry replays: the app's workflows, no store, no thread pool."""
    return Runtime(
        store=_NoStore(),  # type: ignore[arg-type]
        clock=clock or SystemClock(),
        registry=registry,
        executor=None,
        max_payload=1 << 62,
        inline_retry_limit=0.0,
        inline_sleep_limit=0.0,
    )


async def dry_replay(rt: Runtime, run: UnfinishedRun, timeout: float = REPLAY_TIMEOUT) -> Verdict:
    """Replay ``run``'s history against the code of ``rt.registry`` (see the module's text)."""
    try:
        workflow = rt.registry.get(run.workflow_id)
    except UnknownWorkflow:
        detail = f"workflow {run.workflow_id!r} is not in the app"
        return Verdict(run.id, run.workflow_id, "diverged", detail=detail)
    claimed = ClaimedRun(
        run.id, run.workflow_id, run.event, run.created_at, 0, 0, None, run.history
    )
    x = DryExecution(rt, claimed, workflow, list(run.history))
    raised: BaseException | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                await workflow.fn(Event.from_stored(run.event), Step(x))
            except (ReplayEnd, Suspend):
                pass
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raised = exc
            await x.settled()
    except TimeoutError:
        detail = f"the replay reached no step within {timeout:g}s (code that awaits non-steps?)"
        return Verdict(run.id, run.workflow_id, "error", detail=detail)
    if x.fatal is not None:
        return diverged(run.id, run.workflow_id, x.fatal)
    if raised is not None:
        detail = f"the code raised {type(raised).__name__}: {raised}"
        return Verdict(run.id, run.workflow_id, "error", detail=detail)
    return Verdict(run.id, run.workflow_id, "compatible")


def diverged(run_id: str, workflow_id: str, exc: NonDeterminismError) -> Verdict:
    return Verdict(run_id, workflow_id, "diverged", exc.step_key, exc.recorded, exc.detail)


@dataclass(slots=True)
class WorkflowReport:
    """Per workflow: how many runs replayed compatibly, and every one that did not."""

    workflow_id: str
    compatible: int = 0
    diverging: list[Verdict] = field(default_factory=list)


async def pages(
    store: Store, workflow_id: str | None = None, page_size: int = PAGE_SIZE
) -> AsyncIterator[list[UnfinishedRun]]:
    """Every unfinished run with its history, a page at a time, by id (keyset pagination)."""
    after = ""
    while True:
        page = await store.unfinished_runs(after, page_size, workflow_id)
        if not page:
            return
        yield page
        after = page[-1].id


async def check_runs(
    store: Store,
    registry: Registry,
    *,
    workflow_id: str | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> dict[str, WorkflowReport]:
    """Dry-replay every unfinished run against ``registry``'s code; reports by workflow id.

    Runs are read a page at a time (the next page while this one replays) and each page's runs
    are replayed together, so a store of 100,000 unfinished runs never sits in memory at once.
    """
    rt = dry_runtime(registry)
    reports: dict[str, WorkflowReport] = {}
    checked = 0
    ahead = asyncio.ensure_future(store.unfinished_runs("", page_size, workflow_id))
    try:
        while page := await ahead:
            ahead = asyncio.ensure_future(
                store.unfinished_runs(page[-1].id, page_size, workflow_id)
            )
            verdicts = await asyncio.gather(*(dry_replay(rt, run) for run in page))
            checked += len(page)
            _count(reports, verdicts)
            if progress is not None:
                progress(checked)
    finally:
        ahead.cancel()
    return reports


def _count(reports: dict[str, WorkflowReport], verdicts: list[Verdict]) -> None:
    for verdict in verdicts:
        report = reports.setdefault(verdict.workflow_id, WorkflowReport(verdict.workflow_id))
        if verdict.outcome == "compatible":
            report.compatible += 1
        else:
            report.diverging.append(verdict)


# -- an exported history ---------------------------------------------------------------------------

#: What an export file says it is (``dataflows runs export``).
EXPORT_FORMAT = "dataflows.history/1"


def exported_run(data: Any) -> UnfinishedRun:
    """The run of an export (``dataflows runs export``); ``ValueError`` if it is not one."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not a dataflows history: expected format {EXPORT_FORMAT!r}")
    try:
        run, event, steps = data["run"], data["event"], data["steps"]
        return UnfinishedRun(
            id=str(run["id"]),
            workflow_id=str(run["workflow_id"]),
            status=str(run["status"]),
            event=StoredEvent(str(event["id"]), str(event["name"]), event["data"], event["ts"]),
            created_at=float(run["created_at"]),
            version=run.get("version"),
            history=tuple(
                StepRow(
                    key=s["key"],
                    kind=s["kind"],
                    status=s["status"],
                    output=s.get("output"),
                    error=s.get("error"),
                    attempts=int(s.get("attempts", 0)),
                    started_at=s.get("started_at"),
                    completed_at=s.get("completed_at"),
                    wake_at=s.get("wake_at"),
                    event_id=s.get("event_id"),
                )
                for s in steps
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a dataflows history: {exc!r} is missing or malformed") from None


def export_row(row: RunRow) -> dict[str, Any]:
    """A stored run (``get_run``) as ``dataflows runs export`` writes it."""
    return export_history(
        UnfinishedRun(
            row.id, row.workflow_id, row.status, row.event, row.created_at, row.version, row.steps
        )
    )


def export_history(run: UnfinishedRun) -> dict[str, Any]:
    """A run's history as ``dataflows runs export`` writes it (what :func:`replay` reads)."""
    return {
        "format": EXPORT_FORMAT,
        "run": {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "status": run.status,
            "created_at": run.created_at,
            "version": run.version,
        },
        "event": {
            "id": run.event.id,
            "name": run.event.name,
            "data": run.event.data,
            "ts": run.event.ts,
        },
        "steps": [
            {
                "key": s.key,
                "kind": s.kind,
                "status": s.status,
                "output": s.output,
                "error": s.error,
                "attempts": s.attempts,
                "started_at": s.started_at,
                "completed_at": s.completed_at,
                "wake_at": s.wake_at,
                "event_id": s.event_id,
            }
            for s in run.history
        ],
    }


async def replay(app: Any, path: str | Path, workflow_id: str | None = None) -> Verdict:
    """Replay the history exported to ``path`` (``dataflows runs export``) against ``app``'s
    code, as ``dataflows check`` does; raises :class:`NonDeterminismError` if it diverges.

    ``ValueError`` if the file is not a dataflows history, or is a run of a workflow the app
    does not have (or not of ``workflow_id``, if given).
    """
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: not a dataflows history (not JSON)") from None
    run = exported_run(data)
    registry: Registry = app.registry
    if workflow_id is not None and run.workflow_id != workflow_id:
        raise ValueError(f"{path}: a run of workflow {run.workflow_id!r}, not {workflow_id!r}")
    if run.workflow_id not in registry:
        raise ValueError(f"{path}: a run of workflow {run.workflow_id!r}, which the app lacks")
    verdict = await dry_replay(dry_runtime(registry), run)
    if verdict.outcome == "diverged":
        raise NonDeterminismError(run.id, verdict.step or "", verdict.detail, verdict.recorded)
    return verdict
