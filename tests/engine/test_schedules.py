"""Schedules end to end, on both stores, with a clock the test moves (no real waiting).

Several workers fire each tick once; ticks missed while no worker ran are caught up as
``catch_up`` says; daylight-saving changes fire as cron defines; pause and resume; schedules
follow the code.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import dataflows as df
from tests.engine.conftest import MakeApp, ManualClock, eventually, worker

HOUR = 3600.0
DAY = 24 * HOUR
T0 = datetime(2025, 5, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC: an hourly tick


def cron_app(make_app: MakeApp, clock: ManualClock, *triggers: df.Trigger) -> df.Dataflows:
    """An app whose workflow ``tick`` has ``triggers`` and returns its event."""
    app = make_app(clock=clock)

    @app.workflow("tick", trigger=list(triggers))
    async def tick(event: df.Event, step: df.Step) -> dict[str, Any]:
        return {"name": event.name, "id": event.id, **event.data}

    return app


async def runs_of(app: df.Dataflows, workflow_id: str = "tick") -> list[df.Run]:
    """The workflow's runs by their tick (runs caught up together are created at once)."""
    return sorted(await app.list_runs(workflow_id, limit=1000), key=lambda r: r.event.ts)


async def settled(app: df.Dataflows, clock: ManualClock) -> None:
    """Wait until every schedule not paused has fired what was due: its next tick is ahead."""

    async def ahead() -> bool:
        schedules = await app.list_schedules()
        return all(s.next_at is None or s.next_at.timestamp() > clock.now() for s in schedules)

    await eventually(ahead)


async def finished(app: df.Dataflows, count: int, workflow_id: str = "tick") -> list[df.Run]:
    async def done() -> bool:
        runs = await runs_of(app, workflow_id)
        return len(runs) >= count and all(r.status == "completed" for r in runs)

    await eventually(done)
    runs = await runs_of(app, workflow_id)
    assert len(runs) == count, [r.result for r in runs]
    return runs


async def test_three_workers_one_run_per_tick(make_app: MakeApp, clock: ManualClock) -> None:
    clock.set(T0 + 1)
    # Three apps on the same database: three processes, as far as the store can tell.
    apps = [cron_app(make_app, clock, df.cron("@hourly")) for _ in range(3)]
    async with worker(apps[0]), worker(apps[1]), worker(apps[2]) as last:
        for n in range(1, 6):
            clock.set(T0 + n * HOUR)  # each tick on time, seen by every worker at once
            await settled(apps[0], clock)
            await finished(apps[0], n)
        # The schedulers racing on one tick directly, too.
        clock.set(T0 + 6 * HOUR)
        fired = await asyncio.gather(*(last.scheduler.fire_due() for _ in range(3)))
        assert len([run for runs in fired for run in runs]) <= 1
        await settled(apps[0], clock)
        runs = await finished(apps[0], 6)
    assert [r.result["scheduled_at"] for r in runs] == [
        datetime.fromtimestamp(T0 + n * HOUR, UTC).isoformat() for n in range(1, 7)
    ]
    first = runs[0]
    assert first.event.name == "dataflows/cron"
    assert first.event.id == "cron:tick:0:2025-05-05T01:00:00Z"
    assert first.event.ts == datetime.fromtimestamp(T0 + HOUR, UTC)
    assert first.result["name"] == "dataflows/cron"
    # Listed like any run, by workflow and by status.
    assert len(await apps[1].list_runs(status="completed")) == 6


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", 10), ("none", 0)])
async def test_ticks_missed_while_no_worker_ran(
    make_app: MakeApp, clock: ManualClock, catch_up: str, expected: int
) -> None:
    clock.set(T0 + 1)
    app = cron_app(make_app, clock, df.cron("@hourly", catch_up=catch_up))  # type: ignore[arg-type]
    async with worker(app):  # registers the schedule: next tick T0 + 1h
        pass
    clock.set(T0 + 10 * HOUR + 20 * 60)  # ten ticks passed, the last 20 minutes ago
    async with worker(app):
        await settled(app, clock)
        runs = await finished(app, expected)
        if catch_up == "latest":
            assert runs[0].result["scheduled_at"] == "2025-05-05T10:00:00+00:00"
        if catch_up == "all":
            assert [r.result["scheduled_at"][11:16] for r in runs] == [
                f"{h:02d}:00" for h in range(1, 11)
            ]
        # Then on as usual: the next tick, once.
        clock.set(T0 + 11 * HOUR)
        await settled(app, clock)
        runs = await finished(app, expected + 1)
    assert runs[-1].result["scheduled_at"] == "2025-05-05T11:00:00+00:00"


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


async def test_daylight_saving_spring_forward(make_app: MakeApp, clock: ManualClock) -> None:
    clock.set(berlin(2025, 3, 29, 12))
    app = make_app(clock=clock)
    # The ticks are read from the runs' results, not gathered as the code runs: the clock jumps
    # an hour at a time, past the lease of a run still executing, so a run's code may run again.

    @app.workflow("daily", trigger=df.cron("30 2 * * *", tz="Europe/Berlin", catch_up="all"))
    async def daily(event: df.Event, step: df.Step) -> str:
        return str(event.data["scheduled_at"])

    @app.workflow("hourly", trigger=df.cron("30 * * * *", tz="Europe/Berlin", catch_up="all"))
    async def hourly(event: df.Event, step: df.Step) -> str:
        return str(event.data["scheduled_at"])

    async with worker(app):
        # Spring forward in Berlin on 2025-03-30: 02:00 -> 03:00, the clock moved an hour at
        # a time (each tick 30 minutes late: caught up, as catch_up="all" says).
        t = berlin(2025, 3, 29, 12)
        while t < berlin(2025, 3, 31, 12):
            t += HOUR
            clock.set(t)
            await settled(app, clock)
        daily_runs = await finished(app, 2, "daily")
        hourly_runs = await finished(app, 47, "hourly")  # 47 hours of clock time, 48 wall-clock
    daily_ticks = [r.result for r in daily_runs]
    assert daily_ticks == ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]
    hourly_ticks = [r.result for r in hourly_runs]
    assert "2025-03-30T01:30:00+01:00" in hourly_ticks
    assert "2025-03-30T03:30:00+02:00" in hourly_ticks
    assert not [at for at in hourly_ticks if at.startswith("2025-03-30T02:")]


async def test_daylight_saving_fall_back(make_app: MakeApp, clock: ManualClock) -> None:
    clock.set(berlin(2025, 10, 25, 12))
    app = make_app(clock=clock)

    @app.workflow("daily", trigger=df.cron("30 2 * * *", tz="Europe/Berlin", catch_up="all"))
    async def daily(event: df.Event, step: df.Step) -> str:
        return str(event.data["scheduled_at"])

    @app.workflow("half-hourly", trigger=df.cron("*/30 2 * * *", tz="Europe/Berlin"))
    async def half_hourly(event: df.Event, step: df.Step) -> str:
        return str(event.data["scheduled_at"])

    async with worker(app):
        # Every 10 minutes of real time through the night: each tick fires on time.
        t = berlin(2025, 10, 26, 0)
        while t < berlin(2025, 10, 27, 4):
            t += 600
            clock.set(t)
            await settled(app, clock)
        daily_runs = await finished(app, 2, "daily")
        half_hourly_runs = await finished(app, 4, "half-hourly")
    assert [r.result for r in daily_runs] == [
        "2025-10-26T02:30:00+02:00",  # once, though 02:30 came twice
        "2025-10-27T02:30:00+01:00",
    ]
    # A fixed hour (2) names wall-clock times: each once, at its first occurrence.
    assert [r.result for r in half_hourly_runs] == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:00:00+01:00",
        "2025-10-27T02:30:00+01:00",
    ]


async def test_pause_and_resume(make_app: MakeApp, clock: ManualClock) -> None:
    clock.set(T0 + 1)
    app = cron_app(make_app, clock, df.cron("@hourly"))
    async with worker(app):
        [schedule] = await app.list_schedules()
        assert (schedule.id, schedule.workflow_id, schedule.expr, schedule.tz) == (
            "tick:0",
            "tick",
            "@hourly",
            "UTC",
        )
        assert schedule.next_at == datetime.fromtimestamp(T0 + HOUR, UTC)
        assert not schedule.paused

        paused = await app.pause_schedule("tick:0")
        assert paused.paused and paused.next_at is None
        clock.set(T0 + HOUR)
        await asyncio.sleep(0.2)
        clock.set(T0 + 2 * HOUR)
        await asyncio.sleep(0.2)
        assert await runs_of(app) == []

    # Paused across a restart of the code (a deploy).
    async with worker(app):
        [schedule] = await app.list_schedules()
        assert schedule.paused
        resumed = await app.resume_schedule("tick:0")
        assert not resumed.paused
        # The ticks missed while paused are skipped; it goes on with the next one.
        assert resumed.next_at == datetime.fromtimestamp(T0 + 3 * HOUR, UTC)
        clock.set(T0 + 3 * HOUR)
        await settled(app, clock)
        [run] = await finished(app, 1)
    assert run.result["scheduled_at"] == "2025-05-05T03:00:00+00:00"

    with pytest.raises(df.ScheduleNotFound):
        await app.pause_schedule("nope:0")
    with pytest.raises(df.ScheduleNotFound):
        await app.resume_schedule("nope:0")


async def test_a_schedule_removed_from_the_code_stops_firing(
    make_app: MakeApp, clock: ManualClock
) -> None:
    clock.set(T0 + 1)
    old = cron_app(make_app, clock, df.cron("@hourly"))
    async with worker(old):
        clock.set(T0 + HOUR)
        await settled(old, clock)
        await finished(old, 1)

    # The new code keeps the workflow, without its cron trigger.
    new = cron_app(make_app, clock, df.on_event("tick/now"))
    async with worker(new):
        assert await new.list_schedules() == []
        clock.set(T0 + 3 * HOUR)
        await asyncio.sleep(0.3)
        assert len(await runs_of(new)) == 1

    # And code that changes the expression replaces the schedule's next tick.
    newer = cron_app(make_app, clock, df.cron("0 12 * * *"))
    async with worker(newer):
        [schedule] = await newer.list_schedules()
        assert schedule.expr == "0 12 * * *"
        assert schedule.next_at == datetime.fromtimestamp(T0 + 12 * HOUR, UTC)
        clock.set(T0 + 12 * HOUR)
        await settled(newer, clock)
        runs = await finished(newer, 2)
    assert runs[-1].result["scheduled_at"] == "2025-05-05T12:00:00+00:00"


async def test_a_worker_without_schedules_runs_no_schedule_loop(
    make_app: MakeApp, clock: ManualClock
) -> None:
    app = make_app(clock=clock)

    @app.workflow("plain", trigger=df.on_event("plain/go"))
    async def plain(event: df.Event, step: df.Step) -> None:
        return None

    async with worker(app) as w:
        await asyncio.sleep(0.05)
        assert w.scheduler.synced
        loop = next(t for t in w._tasks if t.get_name().startswith("dataflows-schedules"))
        assert loop.done() and loop.exception() is None
