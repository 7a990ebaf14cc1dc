"""step.sleep / step.sleep_until: recorded wake times, never early, nothing held while asleep."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

import dataflows as df
from dataflows.execution import SLEEP_WRITE_LEAD
from tests.engine.conftest import ManualClock, eventually, step_named, wait_status

HOUR = 3600.0
DAY = 24 * HOUR


async def test_wake_time_recorded_once_and_never_pushed_later(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    bodies = 0

    @clock_app.workflow("napper")
    async def napper(event: df.Event, step: df.Step) -> str:
        nonlocal bodies
        bodies += 1
        poke, _ = await asyncio.gather(
            step.wait_for_event("poke", "poke", timeout=None), step.sleep("nap", "24h")
        )
        assert poke is not None
        return "rested"

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("napper")
        run = await wait_status(clock_app, run_id, "waiting")
        first_wake = datetime.fromtimestamp(t0 + DAY, UTC)
        assert step_named(run, "nap").wake_at == first_wake
        assert run.wake_at == first_wake

        # Later, an event forces a replay that reaches the sleep again at a later "now".
        clock.advance(5 * HOUR)
        await clock_app.send("poke", {})
        await eventually(lambda: bodies == 2)
        run = await wait_status(clock_app, run_id, "waiting")
        assert step_named(run, "poke").status == "completed"
        assert bodies == 2
        assert step_named(run, "nap").wake_at == first_wake
        assert run.wake_at == first_wake

        clock.set(t0 + DAY - 1)
        await asyncio.sleep(0.1)
        assert (await clock_app.get_run(run_id)).status == "waiting"
        clock.set(t0 + DAY)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result == "rested"


async def test_never_fires_early(clock_app: df.Dataflows, clock: df.ManualClock) -> None:
    @clock_app.workflow("short-nap")
    async def short_nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "1h30m")
        return "up"

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("short-nap")
        await wait_status(clock_app, run_id, "waiting")
        for at in (t0 + HOUR, t0 + 1.5 * HOUR - 0.001):
            clock.set(at)
            await asyncio.sleep(0.1)  # the worker was woken by the clock and found nothing due
            run = await clock_app.get_run(run_id)
            assert run.status == "waiting"
            assert step_named(run, "nap").status == "waiting"
        clock.set(t0 + 1.5 * HOUR + 0.001)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    nap = step_named(run, "nap")
    assert (nap.kind, nap.status) == ("sleep", "completed")
    assert nap.completed_at is not None
    assert nap.completed_at >= datetime.fromtimestamp(t0 + 1.5 * HOUR, UTC)


async def test_zero_negative_and_past_sleeps_return_at_once_and_are_recorded(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("no-naps")
    async def no_naps(event: df.Event, step: df.Step) -> str:
        await step.sleep("zero", 0)
        await step.sleep("zero-text", "0s")
        await step.sleep("negative", -30)
        await step.sleep("negative-delta", timedelta(minutes=-5))
        await step.sleep_until("past", datetime.fromtimestamp(clock.now() - DAY, UTC))
        await step.sleep_until("past-ts", clock.now() - 1)
        return "done"

    async with clock_app.worker():
        run_id = await clock_app.start("no-naps")
        run = await clock_app.wait_for_run(run_id, timeout=10)  # the clock never moves
    assert (run.status, run.result) == ("completed", "done")
    keys = ["zero", "zero-text", "negative", "negative-delta", "past", "past-ts"]
    # Sorted: with a frozen clock every step has the same start time.
    assert sorted((s.key, s.kind, s.status) for s in run.steps) == sorted(
        (key, "sleep", "completed") for key in keys
    )


async def test_suspended_run_holds_nothing_in_the_worker(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("sleeper")
    async def sleeper(event: df.Event, step: df.Step) -> int:
        await step.sleep("long-nap", "7d")
        return 1

    async with clock_app.worker() as worker:
        run_ids = [await clock_app.start("sleeper") for _ in range(5)]
        for run_id in run_ids:
            run = await wait_status(clock_app, run_id, "waiting")
            assert run.wait_reason is not None and "long-nap" in run.wait_reason
            assert "sleep" in run.wait_reason
        await asyncio.sleep(0.05)
        assert worker._active == {}
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("dataflows-run-")]
        clock.advance(7 * DAY)
        for run_id in run_ids:
            assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"


async def test_sleep_until_aware_datetime(clock_app: df.Dataflows, clock: df.ManualClock) -> None:
    # 09:00 at UTC+5 is 04:00 UTC: the offset must be honoured, not dropped.
    tz = timezone(timedelta(hours=5))
    when = datetime.fromtimestamp(clock.now() + 2 * HOUR, tz)
    assert when.utcoffset() == timedelta(hours=5)

    @clock_app.workflow("alarm")
    async def alarm(event: df.Event, step: df.Step) -> str:
        await step.sleep_until("alarm", when)
        return "ring"

    async with clock_app.worker():
        run_id = await clock_app.start("alarm")
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wake_at == when
        assert step_named(run, "alarm").wake_at == when
        clock.set(when.timestamp() - 1)
        await asyncio.sleep(0.1)
        assert (await clock_app.get_run(run_id)).status == "waiting"
        clock.set(when.timestamp())
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "ring")


async def test_sleep_until_naive_datetime_raises_value_error(clock_app: df.Dataflows) -> None:
    @clock_app.workflow("naive")
    async def naive(event: df.Event, step: df.Step) -> str:
        try:
            await step.sleep_until("naive", datetime(2030, 1, 1))  # naive, on purpose
        except ValueError as exc:
            return f"rejected: {exc}"
        return "accepted"

    async with clock_app.worker():
        run_id = await clock_app.start("naive")
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result.startswith("rejected") and "timezone" in run.result
    assert run.steps == ()


@pytest.mark.parametrize("duration", ["soon", "5 minutes", "-1h", True, float("inf")])
async def test_invalid_duration_raises_invalid_duration(
    clock_app: df.Dataflows, duration: object
) -> None:
    @clock_app.workflow("bad-duration")
    async def bad_duration(event: df.Event, step: df.Step) -> str:
        try:
            await step.sleep("nap", duration)  # type: ignore[arg-type]
        except df.InvalidDuration as exc:
            assert isinstance(exc, ValueError)
            return "invalid"
        return "slept"

    async with clock_app.worker():
        run = await clock_app.wait_for_run(await clock_app.start("bad-duration"), timeout=10)
    assert (run.status, run.result, run.steps) == ("completed", "invalid", ())


async def test_real_clock_sleep_is_not_early(app: df.Dataflows) -> None:
    @app.workflow("real-nap")
    async def real_nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "300ms")
        return "up"

    async with app.worker():
        started = time.monotonic()
        run_id = await app.start("real-nap")
        run = await app.wait_for_run(run_id, timeout=10)
        elapsed = time.monotonic() - started
    assert (run.status, run.result) == ("completed", "up")
    assert elapsed >= 0.3
    nap = step_named(run, "nap")
    assert nap.started_at is not None and nap.completed_at is not None
    assert (nap.completed_at - run.created_at).total_seconds() >= 0.3


# -- short sleeps held in the worker (inline_sleep_limit) ------------------------------------------


async def test_short_sleep_is_held_in_the_worker_with_its_wake_time_recorded(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    after: list[float] = []

    @clock_app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "1500ms")
        after.append(clock.now())
        return "up"

    t0 = clock.now()
    async with clock_app.worker() as worker:
        run_id = await clock_app.start("nap")
        await eventually(lambda: clock.sleepers == 1)
        run = await clock_app.get_run(run_id)
        # The run keeps its lease and slot; the database has the wake time all the same.
        assert run.status == "running" and run_id in worker._active
        assert step_named(run, "nap").status == "waiting"
        assert step_named(run, "nap").wake_at == datetime.fromtimestamp(t0 + 1.5, UTC)
        clock.set(t0 + 1.499)
        await asyncio.sleep(0.05)
        assert after == []
        clock.set(t0 + 1.5)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "up")
    assert after == [t0 + 1.5]
    assert (step_named(run, "nap").kind, step_named(run, "nap").status) == ("sleep", "completed")


async def test_held_sleep_writes_its_end_just_before_it_is_due_and_never_early(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    """The fenced write of a held sleep's end starts SLEEP_WRITE_LEAD before the wake time so
    its round trip does not make the sleep late; it records the wake time itself as the end, and
    the code after the sleep still waits for the wake time."""
    after: list[float] = []

    @clock_app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "1s")
        after.append(clock.now())
        return "up"

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("nap")
        await eventually(lambda: clock.sleepers == 1)
        clock.set(t0 + 1 - SLEEP_WRITE_LEAD / 2)
        await eventually(lambda: _step_status(clock_app, run_id, "nap", "completed"))
        run = await clock_app.get_run(run_id)
        assert step_named(run, "nap").completed_at == datetime.fromtimestamp(t0 + 1, UTC)
        await asyncio.sleep(0.05)
        assert after == [] and run.status == "running"
        clock.set(t0 + 1)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "up")
    assert after == [t0 + 1]


async def test_sleep_over_the_limit_suspends_the_run(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    @clock_app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "1s")
        return "up"

    async with clock_app.worker(inline_sleep_limit=0.5) as worker:
        run_id = await clock_app.start("nap")
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wait_reason == "sleep nap" and worker._active == {}
        assert clock.sleepers == 0
        clock.advance(1)
        assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"


async def test_held_sleep_gives_its_wake_time_to_a_run_that_suspends(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    """A branch holding a short sleep while another branch suspends the run: the run is
    suspended until the sleep is due, not until the other branch's event."""

    @clock_app.workflow("both")
    async def both(event: df.Event, step: df.Step) -> list[object]:
        poke, _ = await asyncio.gather(
            step.wait_for_event("poke", "poke", timeout=None), step.sleep("nap", "1s")
        )
        assert poke is not None
        return ["done"]

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("both")
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wake_at == datetime.fromtimestamp(t0 + 1, UTC)
        clock.set(t0 + 1)
        await eventually(lambda: _step_status(clock_app, run_id, "nap", "completed"))
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wake_at is None and run.wait_reason is not None and "poke" in run.wait_reason
        await clock_app.send("poke", {})
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", ["done"])


async def test_stopping_worker_suspends_its_held_sleeps(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    @clock_app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> str:
        await step.sleep("nap", "2s")
        return "up"

    t0 = clock.now()
    async with clock_app.worker(shutdown_grace=30) as worker:
        run_id = await clock_app.start("nap")
        await eventually(lambda: clock.sleepers == 1)
        started = time.monotonic()
        await worker.stop()
        assert time.monotonic() - started < 5  # did not sit out the grace period
    run = await clock_app.get_run(run_id)
    assert (run.status, run.wait_reason) == ("waiting", "sleep nap")
    assert run.wake_at == datetime.fromtimestamp(t0 + 2, UTC)
    clock.set(t0 + 2)
    async with clock_app.worker():
        assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"


async def _step_status(app: df.Dataflows, run_id: str, key: str, status: str) -> bool:
    return any(s.key == key and s.status == status for s in (await app.get_run(run_id)).steps)
