"""SIGTERM: stop claiming, let the in-flight step finish within the grace period, hand over."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

import dataflows as df
from tests.faults.conftest import Faults, eventually

pytestmark = pytest.mark.crash


async def test_sigterm_lets_the_step_finish(faults: Faults) -> None:
    first = faults.start_worker("first", FAULTS_BLOCK=1, FAULTS_GRACE=20)
    run_id = await faults.client.start("blocker", {"pause": 0.5})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")

    first.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert first.alive(), "exited with a step in flight"
    (faults.scratch / f"release-{run_id}").touch()
    released = time.monotonic()
    assert await first.wait_exit(10) == 0, first.log_text()
    assert time.monotonic() - released < 5  # it did not sit out the whole grace period

    handed_over = await faults.client.get_run(run_id)
    assert handed_over.status in ("queued", "waiting")  # released, or suspended in its sleep
    block = {s.key: s for s in handed_over.steps}["block"]
    assert block.status == "completed" and block.output["pid"] == first.pid

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 0  # a clean hand-over is not a crash recovery
    assert run.result["block"]["pid"] == first.pid
    assert run.result["c"]["pid"] == second.pid
    assert faults.calls(run_id) == {"block": 1, "c": 1}


async def test_sigterm_suspends_a_sleep_held_in_memory(faults: Faults) -> None:
    """A worker stopping does not sit out the short sleeps it holds: it suspends their runs in
    the database, and whoever claims them later resumes them on time."""
    first = faults.start_worker("first", FAULTS_GRACE=20)
    run_id = await faults.client.start("sleeper", {"seconds": 1.8})

    async def held() -> df.Run | None:
        run = await faults.client.get_run(run_id)
        pending = [s for s in run.steps if s.key == "nap" and s.status == "waiting"]
        return run if pending and run.status == "running" else None

    nap = {s.key: s for s in (await eventually(held, 15, "the sleep to be held")).steps}["nap"]
    assert nap.wake_at is not None
    first.signal(signal.SIGTERM)
    assert await first.wait_exit(5) == 0, first.log_text()

    suspended = await faults.client.get_run(run_id)
    if suspended.status == "waiting":  # else the sleep was over before the signal landed
        assert suspended.wait_reason == "sleep nap"
        assert suspended.wake_at is not None
    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 0  # a clean hand-over
    assert faults.calls(run_id) == {"a": 1, "c": 1}
    assert run.result["c"]["pid"] == second.pid
    c_started = {s.key: s for s in run.steps}["c"].started_at
    assert c_started is not None and c_started >= nap.wake_at  # never early


async def test_second_sigterm_exits_at_once(faults: Faults) -> None:
    first = faults.start_worker("first", FAULTS_BLOCK=1, FAULTS_GRACE=20)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")

    first.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert first.alive()
    first.signal(signal.SIGTERM)
    assert await first.wait_exit(3) == 130, first.log_text()
    assert (await faults.client.get_run(run_id)).steps == ()  # the step never recorded

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 1  # an abrupt exit is recovered like a crash, once the lease expires
    assert run.result["block"]["pid"] == second.pid
    assert faults.calls(run_id) == {"block": 2, "c": 1}


async def test_grace_period_expires(faults: Faults) -> None:
    first = faults.start_worker("first", FAULTS_BLOCK=1, FAULTS_GRACE=0.5)
    run_id = await faults.client.start("blocker", {})
    await eventually(lambda: faults.pids("started", run_id), 15, "the step to start")

    first.signal(signal.SIGTERM)
    signalled = time.monotonic()
    # The step never finishes: after the grace period the worker gives the run back and exits.
    assert await first.wait_exit(10) == 0, first.log_text()
    assert time.monotonic() - signalled < 5
    handed_over = await faults.client.get_run(run_id)
    assert handed_over.status == "queued" and handed_over.steps == ()

    second = faults.start_worker("second")
    run = await faults.wait_done(run_id)
    assert run.status == "completed", run.error
    assert run.recoveries == 0
    assert run.result["block"]["pid"] == second.pid
    assert faults.calls(run_id) == {"block": 2, "c": 1}
