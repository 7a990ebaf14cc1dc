"""Firing schedules: every worker fires the ticks that are due; each tick runs once.

A worker starting writes the schedules of its code to the store (``sync``: new cron triggers
added, removed ones deleted, paused kept), then, if its code has any, loops: it reads the
schedules that are due, decides which of their ticks to fire (:func:`plan`, by ``catch_up``),
stores each tick's event with its run, and moves the schedule's ``next_at`` on with a
compare-and-set. Exactly once comes from the event id, ``cron:<schedule id>:<tick in UTC>``:
workers firing the same tick store one event, and one run. Events first, then the
compare-and-set: a worker that dies between the two leaves the tick to be fired again, and
deduplicated.

The loop sleeps until the earliest ``next_at`` (at most ``interval`` seconds, to see pauses,
resumes and deploys made elsewhere) and wakes when a test's clock is moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Protocol

from dataflows import metrics
from dataflows.clock import Clock
from dataflows.errors import StoreUnavailable
from dataflows.intake import CRON_EVENT, new_id
from dataflows.records import EventIntake, NewEvent, NewSchedule, ScheduleRow
from dataflows.serialization import check_event_data
from dataflows.store.base import Store
from dataflows.workflow import Registry, Workflow

if TYPE_CHECKING:  # imported when a schedule is due: a worker without any never loads it
    from dataflows.schedules import CatchUp, CronSchedule

log = logging.getLogger("dataflows.scheduler")

#: A tick fired up to this many seconds after its time is on time; a later one was missed (no
#: worker ran) and is caught up as the schedule's ``catch_up`` says.
ON_TIME = 60.0
#: The most ticks one schedule fires in one go (``catch_up="all"`` after a long stop); the rest
#: follow at once, in further rounds.
BATCH = 100


class SchedulerApp(Protocol):
    clock: Clock
    registry: Registry
    max_payload: int

    @property
    def store(self) -> Store: ...


def code_schedules(registry: Registry, now: float) -> list[NewSchedule]:
    """The schedules the code defines, each with its first tick after ``now``."""
    return [
        NewSchedule(sid, w.id, t.expr, t.tz, t.catch_up, t.schedule().next_after(now))
        for w in registry
        for sid, t in w.schedules()
    ]


def plan(
    cron: CronSchedule, catch_up: CatchUp, next_at: float, now: float, limit: int = BATCH
) -> tuple[list[float], float]:
    """The ticks to fire now of a schedule whose first tick not fired is ``next_at``, and its
    ``next_at`` afterwards.

    Ticks at most :data:`ON_TIME` late always fire. Older ones were missed: ``all`` fires them
    too (``limit`` at a time, oldest first), ``latest`` fires the latest tick due if none is on
    time, ``none`` fires none of them.
    """
    after = next_at - 0.5  # ticks are whole seconds: (after, now] holds next_at
    if catch_up == "all":
        ticks = cron.between(after, now, limit)
        if len(ticks) == limit:
            return ticks, cron.next_after(ticks[-1])
        return ticks, cron.next_after(now)
    ticks = cron.between(max(after, now - ON_TIME - 0.5), now, limit)
    if catch_up == "latest" and not ticks:
        latest = cron.latest_at_or_before(now)
        if latest > after:
            ticks = [latest]
    return ticks, cron.next_after(now)


def tick_id(schedule_id: str, tick: float) -> str:
    """The id of a tick's event: the same for every worker that fires it."""
    from dataflows.schedules import utc_iso

    return f"cron:{schedule_id}:{utc_iso(tick)}"


def tick_intake(
    row: ScheduleRow, workflow: Workflow, cron: CronSchedule, tick: float, limit: int
) -> EventIntake:
    data = check_event_data({"scheduled_at": cron.iso(tick)}, limit=limit)
    event = NewEvent(tick_id(row.id, tick), CRON_EVENT, data, tick)
    return EventIntake(event, (workflow.new_run(new_id(), event),))


class Scheduler:
    """One worker's share of firing schedules (see the module's docstring)."""

    def __init__(self, app: SchedulerApp, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.synced = False
        self._wake = asyncio.Event()
        #: A due schedule this worker left alone (another version's): poll, do not spin.
        self._skipped = False

    @property
    def has_schedules(self) -> bool:
        return any(w.schedules() for w in self.app.registry)

    def wake(self) -> None:
        self._wake.set()

    async def sync(self) -> None:
        """Write the code's schedules to the store (removing those the code no longer has)."""
        now = self.app.clock.now()
        await self.app.store.sync_schedules(code_schedules(self.app.registry, now), now)
        self.synced = True

    async def fire_due(self) -> list[str]:
        """Fire the ticks due now, once; the ids of the runs started."""
        from dataflows.schedules import CronSchedule, check_catch_up

        store, now = self.app.store, self.app.clock.now()
        started: list[str] = []
        self._skipped = False
        for row in await store.due_schedules(now):
            if row.workflow_id not in self.app.registry:
                self._skipped = True  # a workflow of other code: its workers fire it
                continue
            try:
                cron = CronSchedule(row.expr, row.tz)
                ticks, next_at = plan(cron, check_catch_up(row.catch_up), row.next_at, now)
            except ValueError as exc:
                self._skipped = True
                log.error("schedule %s cannot fire: %s", row.id, exc)
                continue
            if ticks:
                workflow = self.app.registry.get(row.workflow_id)
                intakes = [tick_intake(row, workflow, cron, t, self.app.max_payload) for t in ticks]
                sent = await store.send_events(intakes, now)
                new = [r for r in sent.results if not r.duplicate]
                metrics.runs_started([row.workflow_id for r in new for _ in r.run_ids])
                started += [i for r in new for i in r.run_ids]
            await store.advance_schedule(row.id, row.next_at, next_at, now)
        return started

    async def run(self) -> None:
        """Sync (until it succeeds), then fire ticks as they fall due, for as long as it runs."""
        backoff = 0.1
        while True:
            self._wake.clear()
            timeout = self.interval
            try:
                if not self.synced:
                    await self.sync()
                if not self.has_schedules:
                    return  # nothing to fire: the loop costs nothing
                started = await self.fire_due()
                if started:
                    log.info("schedules started %d run(s)", len(started))
                due = await self.app.store.next_schedule_at()
                if due is not None and not self._skipped:
                    timeout = min(timeout, max(0.0, due - self.app.clock.now()))
                backoff = 0.1
            except StoreUnavailable:  # the claim loop reports outages
                timeout = backoff
                backoff = min(backoff * 2, self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
