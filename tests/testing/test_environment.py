"""dataflows.testing: virtual time really skips, mocks really replace, failures show the run."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dataflows as df
from dataflows.clock import SystemClock
from dataflows.testing import EngineBusy, Environment, RunNotFinished, environment
from tests.testing.conftest import REAL_CALLS, build_app

START = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


def at(env: Environment, seconds: float) -> datetime:
    """The virtual time ``seconds`` after the environment started (at ``START``)."""
    return START + timedelta(seconds=seconds)


# -- virtual time ----------------------------------------------------------------------------------


@pytest.mark.dataflows(start=START)
async def test_a_week_of_sleeps_passes_in_milliseconds(dataflows_env: Environment) -> None:
    env = dataflows_env
    began = time.monotonic()
    run_id = await env.start("nap")
    await env.assert_waiting(run_id, for_step="first")

    await env.advance("8d")  # both sleeps are due within the span: one after the other

    await env.assert_completed(run_id, result=3)
    steps = await env.steps(run_id)
    assert list(steps) == ["a", "first", "b", "second"]
    # Each sleep ended at its own wake time, and the code after it ran then, not at the end.
    assert steps["first"].completed_at == at(env, 7 * 86400)
    assert steps["b"].started_at == at(env, 7 * 86400)
    assert steps["second"].completed_at == at(env, 8 * 86400)
    assert env.now() == at(env, 8 * 86400)
    assert time.monotonic() - began < 2.0


@pytest.mark.dataflows(start=START)
async def test_advance_stops_short_of_a_timer_not_yet_due(dataflows_env: Environment) -> None:
    env = dataflows_env
    run_id = await env.start("nap")
    await env.advance(7 * 86400 - 1)  # seconds, one short of the first sleep
    await env.assert_waiting(run_id, for_step="first")
    await env.advance("1s")
    await env.assert_waiting(run_id, for_step="second")
    with pytest.raises(ValueError, match="forward"):
        await env.advance(-1)


async def test_wait_runs_time_on_until_the_run_finishes(dataflows_env: Environment) -> None:
    env = dataflows_env
    began = env.now()
    run = await env.wait(await env.start("nap"))
    assert run.status == "completed"
    assert env.now() - began == timedelta(days=8)


async def test_wait_finishes_a_parent_whose_child_sleeps(dataflows_env: Environment) -> None:
    run = await dataflows_env.wait(await dataflows_env.start("parent"))
    assert (run.status, run.result) == ("completed", 3)


async def test_wait_stops_at_a_wait_for_an_event(dataflows_env: Environment) -> None:
    env = dataflows_env
    sent = await env.send("order/placed", {"order": 7})
    (run_id,) = sent.run_ids
    with pytest.raises(RunNotFinished) as failed:
        await env.wait(run_id)
    message = str(failed.value)
    assert "waits for an event order/approved (decision)" in message
    assert "env.send" in message
    assert "decision" in message and "waiting" in message
    with pytest.raises(RunNotFinished, match="advance=False"):
        await env.wait(run_id, advance=False)


async def test_start_takes_the_workflow_function_too(dataflows_env: Environment) -> None:
    env = dataflows_env
    nap = env.app.registry.get("nap").fn
    run_id = await env.start(nap)
    assert (await env.run(run_id)).workflow_id == "nap"
    with pytest.raises(ValueError, match="not a workflow"):
        await env.start(print)


# -- events and timeouts ------------------------------------------------------------------------------


async def test_an_event_resumes_the_waiting_run(dataflows_env: Environment) -> None:
    env = dataflows_env
    (run_id,) = (await env.send("order/placed", {"order": 7})).run_ids
    await env.assert_waiting(run_id, for_event="order/approved")

    sent = await env.send("order/approved", {"order": 7, "by": "ana"})

    assert sent.resumed_run_ids == (run_id,)
    await env.assert_waiting(run_id, for_step="cooldown")  # went on as far as it could
    await env.advance("24h")
    await env.assert_completed(run_id, {"order": 7, "approved": True, "by": "ana"})


async def test_a_wait_times_out_when_time_passes_its_timeout(dataflows_env: Environment) -> None:
    env = dataflows_env
    (run_id,) = (await env.send("order/placed", {"order": 8})).run_ids
    await env.advance("6d23h")
    await env.assert_waiting(run_id, for_event="order/approved")
    await env.advance("1h")
    await env.assert_completed(run_id, {"order": 8, "approved": False})
    await env.assert_step(run_id, "decision", status="timed_out")


# -- mocks -----------------------------------------------------------------------------------------


async def test_a_mocked_step_never_calls_the_real_function(dataflows_env: Environment) -> None:
    env = dataflows_env
    mock = env.mock_step("charge-card", return_value={"charged": 12})
    run_id = await env.start("charge", {"amount": 12})
    await env.assert_completed(run_id, {"charged": 12})
    assert REAL_CALLS == []
    assert mock.call_count == 1 and mock.called
    assert mock.call_args == (12,)
    call = mock.calls[0]
    assert (call.run_id, call.workflow_id, call.key, call.attempt) == (
        run_id,
        "charge",
        "charge-card",
        1,
    )


async def test_unmocked_steps_call_the_real_function(dataflows_env: Environment) -> None:
    env = dataflows_env
    run = await env.wait(await env.start("charge", {"amount": 5}))
    assert run.status == "failed"
    assert REAL_CALLS == ["charge 5"] * 4  # the first attempt and 3 retries, 10s, 20s, 40s apart
    await env.assert_failed(run.id, RuntimeError)
    await env.assert_failed(run.id, "not reachable")


async def test_side_effects_per_attempt_drive_the_retries(dataflows_env: Environment) -> None:
    env = dataflows_env
    mock = env.mock_step(
        "charge-card", side_effect=[TimeoutError("slow"), ConnectionError, {"charged": 3}]
    )
    run_id = await env.start("charge", {"amount": 3})
    await env.assert_waiting(run_id, for_step="charge-card")  # the first backoff: 10s
    await env.advance("10s")
    await env.assert_waiting(run_id, for_step="charge-card")  # the second: 20s
    await env.advance("20s")
    await env.assert_completed(run_id, {"charged": 3})
    step = await env.assert_step(run_id, "charge-card", output={"charged": 3}, attempts=3)
    assert [e.error["type"] for e in step.attempt_errors] == ["TimeoutError", "ConnectionError"]
    assert [c.attempt for c in mock.calls] == [1, 2, 3]


async def test_retry_after_waits_as_long_as_asked(dataflows_env: Environment) -> None:
    env = dataflows_env
    env.mock_step("charge-card", side_effect=[df.RetryAfterError("1h"), "ok"])
    run_id = await env.start("charge", {"amount": 1})
    await env.advance("59m")
    await env.assert_waiting(run_id, for_step="charge-card")
    await env.advance("1m")
    await env.assert_completed(run_id, "ok")


async def test_an_exception_side_effect_fails_every_attempt(dataflows_env: Environment) -> None:
    env = dataflows_env
    mock = env.mock_step("charge-card", side_effect=df.NonRetriableError("card declined"))
    run_id = await env.start("charge", {"amount": 1})
    await env.assert_failed(run_id, "card declined")
    await env.assert_step(run_id, "charge-card", status="failed", attempts=1)
    assert mock.call_count == 1


async def test_an_exception_class_that_needs_arguments_says_so(
    dataflows_env: Environment,
) -> None:
    env = dataflows_env
    env.mock_step("charge-card", side_effect=df.RetryAfterError)
    run = await env.wait(await env.start("charge", {"amount": 1}))
    await env.assert_failed(run.id, "give an instance, e.g. RetryAfterError('30s')")


async def test_a_callable_side_effect_gets_the_arguments(dataflows_env: Environment) -> None:
    env = dataflows_env

    async def double(amount: int) -> int:
        return amount * 2

    env.mock_step("charge-card", side_effect=double, workflow="charge")
    await env.assert_completed(await env.start("charge", {"amount": 21}), 42)


async def test_an_exhausted_side_effect_fails_the_step(dataflows_env: Environment) -> None:
    env = dataflows_env
    env.mock_step("charge-card", side_effect=["once"])
    await env.assert_completed(await env.start("charge", {"amount": 1}), "once")
    run_id = await env.start("charge", {"amount": 1})
    await env.assert_failed(run_id, "no side effect left for call 2")


async def test_a_mock_scoped_to_a_workflow_leaves_others_alone(
    dataflows_env: Environment,
) -> None:
    env = dataflows_env
    mock = env.mock_step("note", return_value="mocked", workflow="nap")  # nap has no "note"
    run = await env.wait(await env.start("hourly", {"scheduled_at": "now"}))
    assert run.result == "now"
    assert not mock.called
    env.unmock_step("note", workflow="nap")
    with pytest.raises(df.UnknownWorkflow):
        env.mock_step("note", workflow="nope")


async def test_mock_names_are_checked(dataflows_env: Environment) -> None:
    with pytest.raises(df.InvalidStepName):
        dataflows_env.mock_step("")


async def test_a_cancelled_run_starts_no_further_step(dataflows_env: Environment) -> None:
    env = dataflows_env
    run_id = await env.start("nap")
    assert await env.cancel(run_id) == "cancelled"
    await env.advance("8d")
    await env.assert_cancelled(run_id)
    assert list(await env.steps(run_id)) == ["a"]


# -- schedules -------------------------------------------------------------------------------------


@pytest.mark.dataflows(app=build_app(cron=True), start=START)
async def test_cron_ticks_fire_as_time_passes(dataflows_env: Environment) -> None:
    env = dataflows_env
    await env.advance("3h")  # 01:00, 02:00, 03:00
    runs = await env.runs("hourly")
    assert [r.status for r in runs] == ["completed"] * 3
    assert [r.result for r in runs] == [
        "2026-03-02T01:00:00+00:00",
        "2026-03-02T02:00:00+00:00",
        "2026-03-02T03:00:00+00:00",
    ]
    assert [r.created_at for r in runs] == [at(env, h * 3600 - 1800) for h in (1, 2, 3)]


# -- assertion messages ------------------------------------------------------------------------------


async def test_a_failed_assertion_shows_the_run(dataflows_env: Environment) -> None:
    env = dataflows_env
    env.mock_step("charge-card", side_effect=[RuntimeError("503 from bank")] * 3 + [KeyError("x")])
    run = await env.wait(await env.start("charge", {"amount": 9}))
    with pytest.raises(AssertionError) as failed:
        await env.assert_completed(run.id)
    message = str(failed.value)
    assert f"expected run {run.id} to be completed, but it is failed" in message
    assert "error: KeyError: 'x'" in message
    assert "in step: charge-card" in message
    assert "charge-card              run    failed     attempts=4" in message
    assert "attempt 1 failed: RuntimeError: 503 from bank" in message
    assert "traceback (last lines)" in message
    assert 'event: dataflows/start {"amount": 9}' in message


async def test_step_assertions_say_what_differs(dataflows_env: Environment) -> None:
    env = dataflows_env
    env.mock_step("charge-card", side_effect=[RuntimeError("once"), "ok"])
    run = await env.wait(await env.start("charge", {"amount": 1}))
    with pytest.raises(AssertionError) as failed:
        await env.assert_step(run.id, "charge-card", output="ko", attempts=1)
    message = str(failed.value)
    assert "output 'ok', expected 'ko'; attempts 2, expected 1" in message
    assert "attempt 1 failed: RuntimeError: once" in message
    with pytest.raises(AssertionError, match="has no step 'refund'"):
        await env.assert_step(run.id, "refund")


async def test_waiting_assertions_show_what_the_run_waits_for(
    dataflows_env: Environment,
) -> None:
    env = dataflows_env
    (run_id,) = (await env.send("order/placed", {"order": 1})).run_ids
    with pytest.raises(AssertionError) as failed:
        await env.assert_waiting(run_id, for_event="order/shipped")
    message = str(failed.value)
    assert "waits for 'event order/approved (decision)', expected event 'order/shipped'" in message
    assert "(in 7d)" in message  # the wait's timeout, in virtual time
    with pytest.raises(AssertionError, match="to be completed, but it is waiting"):
        await env.assert_completed(run_id)


# -- the environment itself --------------------------------------------------------------------------


async def test_the_app_gets_its_database_and_clock_back() -> None:
    app = build_app()
    registry = app.registry
    async with environment(app) as env:
        url = app.database_url
        assert url is not None and url.startswith("sqlite:///")
        assert app.clock is env.clock
        await env.assert_completed(await env.start("hourly", {"scheduled_at": "x"}))
    assert app.database_url is None
    assert isinstance(app.clock, SystemClock)
    assert app.registry is registry
    assert not Path(url.removeprefix("sqlite:///")).parent.exists()  # the database is gone


async def test_an_app_that_does_not_migrate_is_migrated_in_tests() -> None:
    app = build_app()
    app.auto_migrate = False
    async with environment(app) as env:
        await env.assert_completed(await env.start("hourly", {"scheduled_at": "x"}), "x")
    assert app.auto_migrate is False


async def test_an_open_app_is_refused() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    async with app:
        with pytest.raises(RuntimeError, match="closed app"):
            async with environment(app):
                pass


async def test_a_step_that_never_returns_fails_the_test_in_time() -> None:
    app = build_app()
    never = asyncio.Event()
    async with environment(app, timeout=0.3) as env:
        env.mock_step("a", side_effect=never.wait)
        with pytest.raises(EngineBusy) as failed:
            await env.start("nap")
        assert "did not come to rest within 0.3s" in str(failed.value)
        assert "workflow 'nap': running" in str(failed.value)


async def test_postgres_in_a_schema_of_its_own(pg_server_url: str) -> None:
    app = build_app()
    async with environment(app, database_url=pg_server_url) as env:
        schema = app.schema
        assert schema.startswith("dataflows_test_")
        run = await env.wait(await env.start("nap"))
        assert run.result == 3
    import psycopg

    with psycopg.connect(pg_server_url) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found is None
