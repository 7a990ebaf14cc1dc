"""Step retries: how many attempts, how long between them, and what the workflow sees at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import MakeApp, ManualClock, eventually, step_named, worker

#: Tiny delays, no jitter: for tests about the number of attempts, not their timing.
QUICK = df.RetryPolicy(retries=3, initial=0.001, jitter=0)


class CardDeclined(Exception):
    pass


def always_fails(calls: list[int], exc: Exception) -> Callable[[], None]:
    def fn() -> None:
        calls.append(df.current_step().attempt)
        raise exc

    return fn


async def finish(app: df.Dataflows, workflow_id: str, **options: Any) -> df.Run:
    async with worker(app, **options):
        run_id = await app.start(workflow_id, {})
        return await app.wait_for_run(run_id, timeout=10)


# -- the default policy and its backoff --------------------------------------------------------


def test_backoff_grows_exponentially_and_jitter_only_shortens_it() -> None:
    policy = df.RetryPolicy(initial=1, factor=2, maximum=6, jitter=0.5)
    for retry, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0), (9, 6.0)]:
        delays = [policy.backoff(retry) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays), (retry, min(delays), max(delays))
        assert len(set(delays)) > 100, "jitter spreads retries out"
    exact = df.RetryPolicy(initial=0.5, factor=3, jitter=0)
    assert [exact.backoff(n) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]
    assert df.RetryPolicy().retries == 3
    with pytest.raises(ValueError):
        df.RetryPolicy(jitter=1)


async def test_default_policy_makes_four_attempts_with_growing_jittered_gaps(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    attempts: list[tuple[int, float]] = []

    def call_api() -> None:
        attempts.append((df.current_step().attempt, clock.now()))
        raise ConnectionError("api down")

    @clock_app.workflow("default")
    async def default(event: df.Event, step: df.Step) -> None:
        await step.run("call", call_api)

    async with worker(clock_app):
        run_id = await clock_app.start("default")
        while not (run := await clock_app.get_run(run_id)).done:
            clock.advance(0.25)  # time moves in small hops; every retry waits its full delay
            await asyncio.sleep(0.01)

    assert [n for n, _ in attempts] == [1, 2, 3, 4]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:], strict=False)]
    # Default policy: 1 s, 2 s, 4 s, each shortened by up to 20 % jitter (hops add at most ~0.5 s).
    for gap, full in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert full * 0.8 - 1e-6 <= gap <= full + 0.6, gaps
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "ConnectionError"
    assert run.error["step"] == "call" and run.error["message"] == "api down"
    info = step_named(run, "call")
    assert (info.status, info.attempts) == ("failed", 4)


# -- after the last attempt -------------------------------------------------------------------------


async def test_step_failed_can_be_caught_and_compensated(app: df.Dataflows) -> None:
    charges: list[int] = []
    caught: list[df.StepFailed] = []
    refunds: list[int] = []
    flaky: list[int] = []

    def charge() -> None:
        charges.append(1)
        raise CardDeclined("card declined: insufficient funds")

    def release_stock() -> str:
        refunds.append(1)
        return "released"

    def replay_once() -> str:
        flaky.append(1)
        if len(flaky) == 1:
            raise df.RetryAfterError(0.01)
        return "ok"

    @app.workflow("order")
    async def order(event: df.Event, step: df.Step) -> dict[str, Any]:
        await step.run("reserve", lambda: "reserved")
        try:
            await step.run("charge", charge, retry=df.RetryPolicy(retries=2, initial=0.001))
        except df.StepFailed as exc:
            caught.append(exc)
            compensation = await step.run("release", release_stock)
            await step.run("flaky", replay_once)  # forces a replay through the failed step
            return {"compensation": compensation, "cause": exc.error_type}
        return {"charged": True}

    run = await finish(app, "order", inline_retry_limit=0)

    assert run.status == "completed"
    assert run.result == {"compensation": "released", "cause": "CardDeclined"}
    assert len(charges) == 3, "two retries, and the replay re-raised from history"
    assert len(refunds) == 1
    assert len(caught) == 2
    for exc in caught:
        assert (exc.step_key, exc.error_type) == ("charge", "CardDeclined")
        assert exc.error_message == "card declined: insufficient funds"
        assert "Traceback" in exc.traceback and "in charge" in exc.traceback
        assert "CardDeclined: card declined" in exc.traceback
        assert "card declined" in str(exc)
    info = step_named(run, "charge")
    assert (info.status, info.attempts) == ("failed", 3)
    assert info.error is not None and info.error["type"] == "CardDeclined"


async def test_uncaught_step_failure_fails_the_run(make_app: MakeApp) -> None:
    app = make_app(retry=QUICK)
    calls: list[int] = []
    after: list[int] = []

    @app.workflow("uncaught")
    async def uncaught(event: df.Event, step: df.Step) -> None:
        await step.run("charge", always_fails(calls, CardDeclined("declined")))
        after.append(1)

    run = await finish(app, "uncaught")

    assert run.status == "failed" and run.result is None
    assert calls == [1, 2, 3, 4]
    assert after == [], "nothing after the failed step ran"
    assert run.error is not None
    assert (run.error["type"], run.error["message"], run.error["step"]) == (
        "CardDeclined",
        "declined",
        "charge",
    )
    assert "CardDeclined: declined" in run.error["traceback"]


async def test_non_retriable_error_fails_at_once(app: df.Dataflows) -> None:
    class Invalid(df.NonRetriableError):
        pass

    calls: list[int] = []
    caught: list[df.StepFailed] = []

    @app.workflow("fatal")
    async def fatal(event: df.Event, step: df.Step) -> str:
        try:
            await step.run("validate", always_fails(calls, Invalid("order 7 has no lines")))
        except df.StepFailed as exc:
            caught.append(exc)
        await step.run("reject", always_fails([], df.NonRetriableError("rejected")))
        return "unreachable"

    run = await finish(app, "fatal")

    assert calls == [1], "no retry, despite the default policy of three"
    assert [(e.error_type, e.error_message) for e in caught] == [
        ("Invalid", "order 7 has no lines")
    ]
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "NonRetriableError"
    assert [(s.key, s.status, s.attempts) for s in run.steps] == [
        ("validate", "failed", 1),
        ("reject", "failed", 1),
    ]


# -- how long between attempts ------------------------------------------------------------------------


async def test_retry_after_waits_at_least_its_delay(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    times: list[float] = []

    def rate_limited() -> str:
        times.append(clock.now())
        if len(times) == 1:
            raise df.RetryAfterError("1500ms", "429 Too Many Requests")
        return "ok"

    @clock_app.workflow("limited")
    async def limited(event: df.Event, step: df.Step) -> str:
        return str(await step.run("call", rate_limited))

    async with worker(clock_app):
        run_id = await clock_app.start("limited")
        await eventually(lambda: clock.sleepers == 1)  # 1.5 s is short: retried in memory
        clock.advance(1.4)  # past the default policy's first backoff (<= 1 s), not the 1.5 s asked
        await asyncio.sleep(0.2)
        assert len(times) == 1, "retried before the Retry-After delay"
        clock.advance(0.1)
        run = await clock_app.wait_for_run(run_id, timeout=10)

    assert run.result == "ok"
    assert times[1] - times[0] >= 1.5
    assert step_named(run, "call").attempts == 2


@pytest.mark.parametrize("cause", ["retry-after", "backoff"])
async def test_long_backoff_suspends_the_run_in_the_database(
    make_app: MakeApp, clock: ManualClock, cause: str
) -> None:
    app = make_app(clock=clock, retry=df.RetryPolicy(retries=1, initial=10, jitter=0))
    attempts: list[int] = []

    def call() -> int:
        attempts.append(df.current_step().attempt)
        if len(attempts) == 1:
            raise df.RetryAfterError("10s") if cause == "retry-after" else TimeoutError("slow")
        return len(attempts)

    @app.workflow("patient")
    async def patient(event: df.Event, step: df.Step) -> int:
        return int(await step.run("call", call))

    async with worker(app):
        run_id = await app.start("patient")
        await eventually(lambda: attempts == [1])
        failed_at = clock.now()
        await eventually(async_status(app, run_id, "waiting"))
        run = await app.get_run(run_id)
        assert run.wait_reason is not None and "retry" in run.wait_reason
        assert "call" in run.wait_reason
        assert run.wake_at is not None and abs(run.wake_at.timestamp() - (failed_at + 10)) < 1e-3
        info = step_named(run, "call")
        assert (info.status, info.attempts) == ("retrying", 1)
        assert clock.sleepers == 0, "nothing sleeps in memory for a suspended run"

        clock.advance(9.9)
        await asyncio.sleep(0.2)
        assert attempts == [1] and (await app.get_run(run_id)).status == "waiting"
        clock.advance(0.1)
        run = await app.wait_for_run(run_id, timeout=10)

    assert run.status == "completed" and run.result == 2
    assert attempts == [1, 2]
    assert step_named(run, "call").attempts == 2


def async_status(app: df.Dataflows, run_id: str, status: str) -> Callable[[], Any]:
    async def check() -> bool:
        return (await app.get_run(run_id)).status == status

    return check


# -- per-step and per-workflow policies ----------------------------------------------------------------


async def test_step_and_workflow_retry_settings_override_the_default(make_app: MakeApp) -> None:
    app = make_app(retry=QUICK)
    calls: dict[str, list[int]] = {k: [] for k in ("inherit", "int", "policy", "app")}

    async def attempt(step: df.Step, key: str, **options: Any) -> None:
        with contextlib.suppress(df.StepFailed):
            await step.run(key, always_fails(calls[key], OSError(key)), **options)

    @app.workflow("stubborn", retries=5)
    async def stubborn(event: df.Event, step: df.Step) -> None:
        await attempt(step, "inherit")
        await attempt(step, "int", retry=1)
        await attempt(step, "policy", retry=df.RetryPolicy(retries=0))

    @app.workflow("plain")
    async def plain(event: df.Event, step: df.Step) -> None:
        await attempt(step, "app")

    async with worker(app):
        runs = [await app.start("stubborn"), await app.start("plain")]
        for run_id in runs:
            assert (await app.wait_for_run(run_id, timeout=10)).status == "completed"

    assert {k: len(v) for k, v in calls.items()} == {"inherit": 6, "int": 2, "policy": 1, "app": 4}
    with pytest.raises(TypeError):
        app.workflow("bad", retries="3")  # type: ignore[arg-type]


@pytest.mark.parametrize("suspending", [False, True], ids=["in-memory", "suspended"])
async def test_attempt_number_increments_and_idempotency_key_stays(
    make_app: MakeApp, suspending: bool
) -> None:
    app = make_app(retry=QUICK)
    seen: list[tuple[int, str]] = []

    def flaky() -> int:
        ctx = df.current_step()
        seen.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise ConnectionResetError("try again")
        return ctx.attempt

    @app.workflow("counting")
    async def counting(event: df.Event, step: df.Step) -> int:
        return int(await step.run("call", flaky))

    # inline_retry_limit=0: each retry suspends the run and the attempt comes from the database.
    run = await finish(app, "counting", inline_retry_limit=0 if suspending else 2.0)

    assert run.result == 3
    assert [n for n, _ in seen] == [1, 2, 3]
    assert {key for _, key in seen} == {f"{run.id}:call"}


async def test_step_timeout_fails_a_slow_attempt_and_retries_it(make_app: MakeApp) -> None:
    app = make_app(retry=QUICK)
    attempts: list[int] = []

    async def slow_once() -> int:
        attempts.append(df.current_step().attempt)
        if len(attempts) == 1:
            await asyncio.sleep(5)
        return len(attempts)

    async def always_slow() -> None:
        await asyncio.sleep(5)

    @app.workflow("timed")
    async def timed(event: df.Event, step: df.Step) -> dict[str, Any]:
        result = await step.run("slow-once", slow_once, timeout="100ms")
        try:
            await step.run("always-slow", always_slow, timeout=0.05, retry=0)
        except df.StepFailed as exc:
            return {"result": result, "failure": exc.error_type}
        return {"result": result}

    loop = asyncio.get_running_loop()
    started = loop.time()
    run = await finish(app, "timed")

    assert loop.time() - started < 3, "the slow attempts were cut short"
    assert run.result == {"result": 2, "failure": "TimeoutError"}
    assert attempts == [1, 2]
    assert step_named(run, "slow-once").attempts == 2
    assert step_named(run, "always-slow").attempts == 1
