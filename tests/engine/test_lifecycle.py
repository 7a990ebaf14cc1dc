"""Run lifecycle: cancel, retry, unknown runs, workflow timeouts, poison runs, graceful stop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import dataflows as df
from dataflows.worker import WorkerOptions
from tests.engine.conftest import wait_status

HOUR = 3600.0


async def test_cancel_a_waiting_run(app: df.Dataflows) -> None:
    after_wait: list[str] = []

    @app.workflow("approval")
    async def approval(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("decision", "decided", timeout=None)
        await step.run("act", lambda: after_wait.append(event.data["who"]))
        return "acted"

    async with app.worker():
        doomed = await app.start("approval", {"who": "doomed"})
        await wait_status(app, doomed, "waiting")
        assert await app.cancel(doomed) == "cancelled"
        # A witness waiting for the same event: once it has finished, the worker has seen the
        # event too, and had every chance to run the cancelled run.
        witness = await app.start("approval", {"who": "witness"})
        await wait_status(app, witness, "waiting")
        await app.send("decided", {})
        assert (await app.wait_for_run(witness, timeout=10)).status == "completed"
        await asyncio.sleep(0.05)
    run = await app.get_run(doomed)
    assert run.status == "cancelled"
    assert run.completed_at is not None
    assert run.error is not None and run.error["type"] == "Cancelled"
    assert after_wait == ["witness"]
    assert [s.key for s in run.steps if s.status == "completed"] == []


async def test_cancel_while_a_step_runs_discards_its_result(app: df.Dataflows) -> None:
    entered, release = threading.Event(), threading.Event()
    next_step_calls = 0

    def slow() -> str:
        entered.set()
        release.wait(10)
        return "slow result"

    def after() -> None:
        nonlocal next_step_calls
        next_step_calls += 1

    @app.workflow("slow")
    async def slow_wf(event: df.Event, step: df.Step) -> Any:
        await step.run("slow", slow)
        await step.run("after", after)
        return "done"

    async with app.worker() as worker:
        run_id = await app.start("slow")
        assert await asyncio.to_thread(entered.wait, 10)
        assert await app.cancel(run_id) == "cancelled"
        release.set()
        deadline = time.monotonic() + 10
        while worker._active:  # the run's task ends once its write is refused
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
    run = await app.get_run(run_id)
    assert run.status == "cancelled"
    assert run.result is None
    assert run.steps == ()  # the finished step's result was discarded
    assert next_step_calls == 0


@pytest.mark.parametrize("outcome", ["completed", "failed"])
async def test_cancel_of_a_finished_run_keeps_its_status(app: df.Dataflows, outcome: str) -> None:
    @app.workflow("quick")
    async def quick(event: df.Event, step: df.Step) -> Any:
        if event.data["fail"]:
            raise RuntimeError("failed on purpose")
        return "ok"

    async with app.worker():
        run_id = await app.start("quick", {"fail": outcome == "failed"})
        before = await app.wait_for_run(run_id, timeout=10)
    assert before.status == outcome
    assert await app.cancel(run_id) == outcome
    after = await app.get_run(run_id)
    assert (after.status, after.result, after.error) == (outcome, before.result, before.error)


async def test_retry_of_a_failed_run_keeps_recorded_steps(app: df.Dataflows) -> None:
    calls = {"fetch": 0, "flaky": 0}
    broken = True

    def fetch() -> dict[str, int]:
        calls["fetch"] += 1
        return {"value": 20}

    def flaky(item: dict[str, int]) -> int:
        calls["flaky"] += 1
        if broken:
            raise df.NonRetriableError("downstream is down")
        return item["value"] + 1

    @app.workflow("pipeline")
    async def pipeline(event: df.Event, step: df.Step) -> Any:
        item = await step.run("fetch", fetch)
        return await step.run("flaky", flaky, item)

    async with app.worker():
        run_id = await app.start("pipeline")
        failed = await app.wait_for_run(run_id, timeout=10)
        assert failed.status == "failed"
        assert failed.error is not None and failed.error["type"] == "NonRetriableError"
        assert {s.key: s.status for s in failed.steps} == {"fetch": "completed", "flaky": "failed"}

        broken = False
        assert await app.retry(run_id) == "queued"
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result, run.error) == ("completed", 21, None)
    assert calls == {"fetch": 1, "flaky": 2}
    assert {s.key: s.status for s in run.steps} == {"fetch": "completed", "flaky": "completed"}


async def test_retry_of_a_completed_run_is_invalid(app: df.Dataflows) -> None:
    @app.workflow("fine")
    async def fine(event: df.Event, step: df.Step) -> Any:
        return "fine"

    async with app.worker():
        run_id = await app.start("fine")
        await app.wait_for_run(run_id, timeout=10)
    with pytest.raises(df.InvalidRunState) as caught:
        await app.retry(run_id)
    assert caught.value.status == "completed" and caught.value.run_id == run_id
    assert (await app.get_run(run_id)).status == "completed"


async def test_unknown_run_id(app: df.Dataflows) -> None:
    for call in (app.get_run, app.cancel, app.retry, app.wait_for_run):
        with pytest.raises(df.RunNotFound) as caught:
            await call("no-such-run")
        assert caught.value.run_id == "no-such-run"


async def test_workflow_timeout_fails_a_run_that_waits_past_it(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    after_wait = 0

    @clock_app.workflow("bounded", timeout="1h")
    async def bounded(event: df.Event, step: df.Step) -> Any:
        nonlocal after_wait
        await step.wait_for_event("never", "never", timeout="1d")
        after_wait += 1
        return "finished"

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("bounded")
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wake_at is not None and run.wake_at.timestamp() == pytest.approx(t0 + HOUR)
        clock.set(t0 + HOUR - 1)
        await asyncio.sleep(0.1)
        assert (await clock_app.get_run(run_id)).status == "waiting"
        clock.set(t0 + HOUR + 1)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "TimeoutError"
    assert after_wait == 0


async def _crash_recoveries(app: df.Dataflows, clock: df.ManualClock, crashes: int) -> str:
    """Start a run and let ghost workers claim it and "die" (leases expire) ``crashes``+1 times.

    The first claim takes the queued run; each later one finds the lease expired and counts a
    crash recovery, as when the run kills every worker that picks it up.
    """
    run_id = await app.start("fragile")
    for n in range(crashes + 1):
        claimed = await app.store.claim_runs(f"ghost-{n}", 1, lease_seconds=0.01, now=clock.now())
        assert [(c.id, c.recoveries) for c in claimed] == [(run_id, n)]
        clock.advance(1)
    assert (await app.get_run(run_id)).status == "running"  # held by the dead ghost
    return run_id


async def test_poison_run_is_quarantined(clock_app: df.Dataflows, clock: df.ManualClock) -> None:
    bodies = 0

    @clock_app.workflow("fragile")
    async def fragile(event: df.Event, step: df.Step) -> Any:
        nonlocal bodies
        bodies += 1
        return "survived"

    limit = WorkerOptions().max_recoveries
    run_id = await _crash_recoveries(clock_app, clock, limit)
    async with clock_app.worker():
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    assert run.recoveries == limit + 1
    assert run.error is not None
    assert run.error["type"] == "PoisonRun"
    assert run.error["recoveries"] == limit + 1
    assert f"lost {limit + 1} times" in run.error["message"]
    assert bodies == 0


async def test_run_within_the_recovery_limit_still_runs(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("fragile")
    async def fragile(event: df.Event, step: df.Step) -> Any:
        return "survived"

    limit = WorkerOptions().max_recoveries
    run_id = await _crash_recoveries(clock_app, clock, limit - 1)
    async with clock_app.worker():
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result, run.recoveries) == ("completed", "survived", limit)


async def test_graceful_stop_lets_an_in_flight_step_finish(app: df.Dataflows) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def in_flight() -> str:
        entered.set()
        await release.wait()
        return "finished in time"

    @app.workflow("graceful")
    async def graceful(event: df.Event, step: df.Step) -> Any:
        return await step.run("work", in_flight)

    async with app.worker() as worker:
        run_id = await app.start("graceful")
        await asyncio.wait_for(entered.wait(), 10)
        stopping = asyncio.create_task(worker.stop(grace=10))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waiting for the step
        release.set()
        await asyncio.wait_for(stopping, 10)
        run = await app.get_run(run_id)
        assert (run.status, run.result) == ("completed", "finished in time")
        (work,) = run.steps
        assert (work.key, work.status, work.output) == ("work", "completed", "finished in time")


async def test_graceful_stop_releases_a_run_still_in_flight_past_the_grace(
    app: df.Dataflows,
) -> None:
    attempts = 0
    entered = asyncio.Event()

    async def stuck() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            entered.set()
            await asyncio.Event().wait()  # never finishes: cancelled at the end of the grace
        return "second worker"

    @app.workflow("stuck")
    async def stuck_wf(event: df.Event, step: df.Step) -> Any:
        return await step.run("work", stuck)

    run_id = await app.start("stuck")
    async with app.worker() as worker:
        await asyncio.wait_for(entered.wait(), 10)
        started = time.monotonic()
        await worker.stop(grace=0.2)
        assert time.monotonic() - started >= 0.2
        run = await app.get_run(run_id)
        assert (run.status, run.steps, run.recoveries) == ("queued", (), 0)
    async with app.worker():
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result, run.recoveries) == ("completed", "second worker", 0)
    assert attempts == 2
