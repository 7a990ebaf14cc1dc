"""Shared step budgets (``app.rate_limit`` and ``step.run(..., rate_limit=)``) on both stores,
with a ManualClock: units taken in the database, runs waiting without a slot or a thread, no
attempt spent while waiting, keys from the triggering event, and the errors of bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import MakeApp, ManualClock, eventually, step_named, wait_status, worker


def _calls(into: list[tuple[float, Any]], clock: df.Clock) -> Any:
    def call(item: Any) -> Any:
        into.append((clock.now(), item))
        return item

    return call


async def test_a_budget_lets_limit_calls_through_per_period_and_the_rest_wait(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("api", limit=2, period="10s")
    calls: list[tuple[float, Any]] = []
    call = _calls(calls, clock)

    @clock_app.workflow("caller")
    async def caller(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", call, event.data["n"], rate_limit="api")

    t0 = clock.now()
    async with worker(clock_app, concurrency=8) as w:
        ids = [await clock_app.start("caller", {"n": n}) for n in range(5)]
        await eventually(lambda: len(calls) == 2)

        async def waiting_runs() -> list[df.Run]:
            runs = [await clock_app.get_run(i) for i in ids]
            return [r for r in runs if r.status == "waiting"]

        await eventually(lambda: _count(waiting_runs(), 3))
        waiting = await waiting_runs()
        for run in waiting:
            # Suspended in the store: no slot held, no step thread, the reason shown.
            assert run.wait_reason == "rate_limit api/ (call)"
            assert run.steps == ()  # no attempt recorded while waiting
        # In line: the first two get the two units that free at t0 + 10, the third the first of
        # them again a period later.
        wakes = sorted(run.wake_at for run in waiting if run.wake_at is not None)
        assert wakes == [datetime.fromtimestamp(t, UTC) for t in (t0 + 10, t0 + 10, t0 + 20)]
        await eventually(lambda: not w._active)
        assert len(calls) == 2

        clock.set(t0 + 9.999)
        await asyncio.sleep(0.2)
        assert len(calls) == 2
        clock.set(t0 + 10)
        await eventually(lambda: len(calls) == 4)
        # Time moves on once the calls have returned (a unit is held until its call returns).
        await eventually(lambda: _completed(clock_app, ids, 4))
        assert len(calls) == 4
        clock.set(t0 + 20)
        runs = [await clock_app.wait_for_run(i, timeout=10) for i in ids]
    assert all(r.status == "completed" for r in runs)
    assert sorted(r.result for r in runs) == [0, 1, 2, 3, 4]
    assert [t for t, _ in calls] == [t0, t0, t0 + 10, t0 + 10, t0 + 20]
    for run in runs:
        assert step_named(run, "call").attempts == 1


async def _count(runs: Any, n: int) -> bool:
    return len(await runs) == n


async def _completed(app: df.Dataflows, run_ids: list[str], n: int) -> bool:
    """Whether ``n`` of the runs have completed (their calls returned and were recorded)."""
    runs = [await app.get_run(i) for i in run_ids]
    return sum(r.status == "completed" for r in runs) == n


async def test_keys_from_the_event_keep_separate_budgets(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("per-token", limit=1, period="1m")
    calls: list[tuple[float, Any]] = []
    call = _calls(calls, clock)

    @clock_app.workflow("by-path")
    async def by_path(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", call, event.data["n"], rate_limit=("per-token", "data.token"))

    @clock_app.workflow("by-callable")
    async def by_callable(event: df.Event, step: df.Step) -> Any:
        key = ("per-token", lambda e: e.data.get("org", {}).get("id"))
        return await step.run("call", call, event.data["n"], rate_limit=key)

    async with worker(clock_app):
        a1 = await clock_app.start("by-path", {"n": 1, "token": "a"})
        b1 = await clock_app.start("by-path", {"n": 2, "token": "b"})
        n1 = await clock_app.start("by-path", {"n": 3})  # no token: the key ""
        for run_id in (a1, b1, n1):
            await clock_app.wait_for_run(run_id, timeout=10, raise_on_failure=True)
        a2 = await clock_app.start("by-path", {"n": 4, "token": "a"})
        run = await wait_status(clock_app, a2, "waiting")
        assert run.wait_reason == "rate_limit per-token/a (call)"
        # The callable's key 7 is "7"; None is "", which the token-less run above used.
        c1 = await clock_app.start("by-callable", {"n": 5, "org": {"id": 7}})
        await clock_app.wait_for_run(c1, timeout=10, raise_on_failure=True)
        c2 = await clock_app.start("by-callable", {"n": 6})
        run = await wait_status(clock_app, c2, "waiting")
        assert run.wait_reason == "rate_limit per-token/ (call)"
        clock.advance(60)
        for run_id in (a2, c2):
            await clock_app.wait_for_run(run_id, timeout=10, raise_on_failure=True)
    assert sorted(n for _, n in calls) == [1, 2, 3, 4, 5, 6]


async def test_waiting_for_budget_spends_no_attempt_and_each_attempt_takes_a_unit(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("api", limit=1, period="10s")
    attempts: list[float] = []

    def flaky() -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise RuntimeError("try again")
        return "ok"

    @clock_app.workflow("flaky")
    async def flaky_wf(event: df.Event, step: df.Step) -> Any:
        return await step.run(
            "call",
            flaky,
            rate_limit="api",
            retry=df.RetryPolicy(retries=2, initial=0.0, jitter=0.0),
        )

    t0 = clock.now()
    async with worker(clock_app):
        run_id = await clock_app.start("flaky")
        await eventually(lambda: len(attempts) == 1)
        # The retry comes at once but must wait for the next unit: the run waits in the store.
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wait_reason == "rate_limit api/ (call)"
        assert step_named(run, "call").attempts == 1
        for _ in range(3):  # woken early (another event, a replay): it asks again, still waits
            clock.advance(1)
            await asyncio.sleep(0.05)
        assert len(attempts) == 1
        clock.set(t0 + 10)
        await eventually(lambda: len(attempts) == 2)

        async def two_attempts_recorded() -> bool:
            run = await clock_app.get_run(run_id)
            return run.status == "waiting" and step_named(run, "call").attempts == 2

        await eventually(two_attempts_recorded)  # the second call has returned
        clock.set(t0 + 20)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert attempts == [t0, t0 + 10, t0 + 20]
    assert step_named(run, "call").attempts == 3  # the failures, not the waits


async def test_a_units_window_starts_when_its_call_returns(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("api", limit=1, period="10s")
    calls: list[float] = []

    async def slow() -> None:
        calls.append(clock.now())
        clock.advance(3)  # the call takes 3 s: it may reach the API any time in them

    @clock_app.workflow("slow")
    async def slow_wf(event: df.Event, step: df.Step) -> None:
        await step.run("call", slow, rate_limit="api")

    t0 = clock.now()
    async with worker(clock_app):
        first = await clock_app.start("slow")
        await clock_app.wait_for_run(first, timeout=10, raise_on_failure=True)
        second = await clock_app.start("slow")
        run = await wait_status(clock_app, second, "waiting")
        assert run.wake_at == datetime.fromtimestamp(t0 + 13, UTC)
        clock.set(t0 + 12.999)
        await asyncio.sleep(0.2)
        assert len(calls) == 1
        clock.set(t0 + 13)
        await clock_app.wait_for_run(second, timeout=10, raise_on_failure=True)
    assert calls == [t0, t0 + 13]


async def test_a_run_asking_just_before_its_unit_frees_waits_in_memory(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    """A unit due within a tenth of the period is waited for in memory (the run stays
    ``running``, no attempt spent); a longer wait suspends the run again."""
    clock_app.rate_limit("api", limit=1, period="10s")
    released = asyncio.Event()
    calls: list[str] = []

    async def call(name: str) -> str:
        calls.append(name)
        if name == "a":
            await released.wait()  # in flight past its expected return
        return name

    @clock_app.workflow("caller")
    async def caller(event: df.Event, step: df.Step) -> str:
        done: str = await step.run("call", call, event.data["name"], rate_limit="api")
        return done

    t0 = clock.now()
    async with worker(clock_app, concurrency=4):
        a = await clock_app.start("caller", {"name": "a"})
        await eventually(lambda: calls == ["a"])
        b = await clock_app.start("caller", {"name": "b"})
        run = await wait_status(clock_app, b, "waiting")
        assert run.wake_at == datetime.fromtimestamp(t0 + 10, UTC)  # a's call, due back by then
        clock.set(t0 + 10)
        # a's call has not returned: b is told to look again in 0.1 s and waits in memory.
        run = await wait_status(clock_app, b, "running")
        await asyncio.sleep(0.2)
        assert (await clock_app.get_run(b)).status == "running" and calls == ["a"]
        released.set()  # a's call returns at t0 + 10: its unit frees at t0 + 20
        await clock_app.wait_for_run(a, timeout=10, raise_on_failure=True)
        clock.set(t0 + 10.1)
        run = await wait_status(clock_app, b, "waiting")  # 9.9 s to go: suspended again
        assert run.wake_at == datetime.fromtimestamp(t0 + 20, UTC) and run.steps == ()
        clock.set(t0 + 20)
        run = await clock_app.wait_for_run(b, timeout=10, raise_on_failure=True)
    assert calls == ["a", "b"] and step_named(run, "call").attempts == 1


async def test_parallel_steps_of_one_run_share_the_budget(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("api", limit=1, period="10s")
    calls: list[tuple[float, Any]] = []
    call = _calls(calls, clock)

    @clock_app.workflow("fan-out")
    async def fan_out(event: df.Event, step: df.Step) -> Any:
        return await asyncio.gather(
            *(step.run(f"call-{n}", call, n, rate_limit="api") for n in range(3))
        )

    async def recorded_and_waiting(count: int) -> bool:
        run = await clock_app.get_run(run_id)
        return run.status == "waiting" and len(run.steps) == count

    t0 = clock.now()
    async with worker(clock_app):
        run_id = await clock_app.start("fan-out")
        # One branch got the unit and its step was recorded before the run suspended (time
        # moves on only then: a call still running at t0 + 10 would hold its unit longer).
        await eventually(lambda: recorded_and_waiting(1))
        run = await clock_app.get_run(run_id)
        assert run.wait_reason is not None and run.wait_reason.startswith("rate_limit api/ (")
        assert run.wake_at == datetime.fromtimestamp(t0 + 10, UTC)
        clock.set(t0 + 10)
        await eventually(lambda: recorded_and_waiting(2))
        clock.set(t0 + 20)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result == [0, 1, 2]
    assert [t for t, _ in calls] == [t0, t0 + 10, t0 + 20]


async def test_a_replayed_step_takes_no_unit(clock_app: df.Dataflows, clock: ManualClock) -> None:
    clock_app.rate_limit("api", limit=1, period="1h")
    calls: list[tuple[float, Any]] = []
    call = _calls(calls, clock)

    @clock_app.workflow("two")
    async def two(event: df.Event, step: df.Step) -> Any:
        first = await step.run("first", call, 1, rate_limit="api")
        await step.sleep("nap", "1m")  # the run is replayed after the nap: "first" is memoized
        return [first, await step.run("second", call, 2)]

    async with worker(clock_app):
        run_id = await clock_app.start("two")
        await wait_status(clock_app, run_id, "waiting")
        clock.advance(60)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result == [1, 2]
    assert len(calls) == 2


async def test_no_unit_is_taken_for_steps_without_rate_limit(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    clock_app.rate_limit("api", limit=1, period="1h")

    @clock_app.workflow("plain")
    async def plain(event: df.Event, step: df.Step) -> Any:
        return [await step.run(f"s{n}", lambda: 1) for n in range(3)]

    @clock_app.workflow("limited")
    async def limited(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", lambda: 2, rate_limit="api")

    async with worker(clock_app):
        run = await clock_app.wait_for_run(await clock_app.start("plain"), timeout=10)
        assert run.result == [1, 1, 1]
        run = await clock_app.wait_for_run(await clock_app.start("limited"), timeout=10)
        assert run.result == 2  # the budget was untouched by the plain steps


async def test_two_workers_on_one_database_share_the_budget(
    make_app: MakeApp, clock: ManualClock
) -> None:
    apps = [make_app(clock=clock), make_app(clock=clock)]
    calls: list[tuple[float, Any]] = []
    call = _calls(calls, clock)
    for app in apps:
        app.rate_limit("api", limit=3, period="1s")

        @app.workflow("caller")
        async def caller(event: df.Event, step: df.Step) -> Any:
            return await step.run("call", call, event.data["n"], rate_limit="api")

    t0 = clock.now()
    async with worker(apps[0], concurrency=5), worker(apps[1], concurrency=5):
        ids = [await apps[n % 2].start("caller", {"n": n}) for n in range(9)]
        await eventually(lambda: _completed(apps[0], ids, 3))
        assert len(calls) == 3
        clock.set(t0 + 1)
        await eventually(lambda: _completed(apps[0], ids, 6))
        assert len(calls) == 6
        clock.set(t0 + 2)
        for run_id in ids:
            await apps[0].wait_for_run(run_id, timeout=10, raise_on_failure=True)
    assert sorted(t for t, _ in calls) == [t0] * 3 + [t0 + 1] * 3 + [t0 + 2] * 3


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"limit": 0, "period": "1s"}, "limit=0"),
        ({"limit": -1, "period": "1s"}, "limit=-1"),
        ({"limit": 2.5, "period": "1s"}, "limit=2.5"),
        ({"limit": True, "period": "1s"}, "limit=True"),
        ({"limit": "5", "period": "1s"}, "limit='5'"),
        ({"limit": 5, "period": 0}, "period=0"),
        ({"limit": 5, "period": -1}, "period=-1"),
        ({"limit": 5, "period": "soon"}, "period='soon'"),
        ({"limit": 5, "period": None}, "period=None"),
    ],
)
def test_declaration_errors_name_the_option(kwargs: dict[str, Any], option: str) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError, match="rate_limit 'api'") as info:
        app.rate_limit("api", **kwargs)
    assert option in str(info.value)


@pytest.mark.parametrize("name", ["", 7, None, "a" * 201, "tab\there"])
def test_a_budget_name_must_be_a_printable_string(name: Any) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError, match="rate_limit name="):
        app.rate_limit(name, limit=1, period="1s")


def test_a_budget_is_declared_once() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    budget = app.rate_limit("api", limit=5, period="1m")
    assert (budget.name, budget.limit, budget.period) == ("api", 5, 60.0)
    with pytest.raises(ValueError, match="declared twice"):
        app.rate_limit("api", limit=5, period="1m")


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [
        ("nope", "step 'call': rate_limit budget 'nope' is not declared"),
        (("nope", "data.token"), "step 'call': rate_limit budget 'nope' is not declared"),
        (("api", "token"), "step 'call': rate_limit key 'token' is invalid"),
        (("api", 7), "step 'call': rate_limit key 7 is invalid"),
        (("api",), "step 'call': rate_limit=('api',) is invalid"),
        (7, "step 'call': rate_limit=7 is invalid"),
        (("api", lambda e: ["a list"]), "rate_limit 'api': the key must be a string"),
    ],
)
async def test_a_bad_rate_limit_fails_the_run_naming_step_and_budget(
    clock_app: df.Dataflows, rate_limit: Any, message: str
) -> None:
    clock_app.rate_limit("api", limit=5, period="1s")
    called = []

    @clock_app.workflow("bad")
    async def bad(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", lambda: called.append(1), rate_limit=rate_limit)

    async with worker(clock_app):
        run = await clock_app.wait_for_run(await clock_app.start("bad"), timeout=10)
    assert run.status == "failed"
    assert message in str(run.error)
    assert called == []


async def test_a_long_key_is_replaced_by_its_digest(clock_app: df.Dataflows) -> None:
    clock_app.rate_limit("api", limit=1, period="1h")

    @clock_app.workflow("long")
    async def long(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", lambda: 1, rate_limit=("api", "data.token"))

    async with worker(clock_app):
        await clock_app.wait_for_run(
            await clock_app.start("long", {"token": "x" * 500}), timeout=10, raise_on_failure=True
        )
        run = await wait_status(
            clock_app, await clock_app.start("long", {"token": "x" * 500}), "waiting"
        )
    assert run.wait_reason is not None
    assert run.wait_reason.startswith("rate_limit api/sha256:")
