"""step.invoke: child runs, their results and failures, timeouts, and no second child on replay."""

from __future__ import annotations

import asyncio
from typing import Any

import dataflows as df
from tests.engine.conftest import eventually, wait_status

HOUR = 3600.0


def register_child(app: df.Dataflows) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    @app.workflow("double")
    async def double(event: df.Event, step: df.Step) -> Any:
        calls.append(dict(event.data))
        if event.data.get("fail"):
            raise ValueError(f"cannot double {event.data['n']}")
        if event.data.get("wait"):
            await step.wait_for_event("release", "release", timeout=None)
        return await step.run("double", lambda: event.data["n"] * 2)

    return calls


async def test_invoke_returns_the_child_result(app: df.Dataflows) -> None:
    register_child(app)

    @app.workflow("parent")
    async def parent(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("child", "double", {"n": 21})

    async with app.worker():
        run_id = await app.start("parent")
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", 42)
    (child,) = await app.list_runs("double")
    assert child.parent_run_id == run_id
    assert (child.status, child.result, dict(child.event.data)) == ("completed", 42, {"n": 21})
    invoke = next(s for s in run.steps if s.key == "child")
    assert (invoke.kind, invoke.status) == ("invoke", "completed")
    assert (await app.get_run(run_id)).parent_run_id is None


async def test_child_failure_raises_step_failed_which_the_parent_can_catch(
    app: df.Dataflows,
) -> None:
    register_child(app)

    @app.workflow("careful")
    async def careful(event: df.Event, step: df.Step) -> Any:
        try:
            await step.invoke("child", "double", {"n": 1, "fail": True})
        except df.StepFailed as exc:
            return {"type": exc.error_type, "message": exc.error_message, "key": exc.step_key}
        return "no error"

    async with app.worker():
        run = await app.wait_for_run(await app.start("careful"), timeout=10)
    assert run.status == "completed"
    assert run.result == {"type": "ValueError", "message": "cannot double 1", "key": "child"}
    (child,) = await app.list_runs("double")
    assert child.status == "failed" and child.parent_run_id == run.id


async def test_uncaught_child_failure_fails_the_parent(app: df.Dataflows) -> None:
    register_child(app)

    @app.workflow("careless")
    async def careless(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("child", "double", {"n": 1, "fail": True})

    async with app.worker():
        run = await app.wait_for_run(await app.start("careless"), timeout=10)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["type"] == "ValueError" and "cannot double 1" in run.error["message"]


async def test_invoke_timeout_raises_step_failed(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    register_child(clock_app)

    @clock_app.workflow("hurried")
    async def hurried(event: df.Event, step: df.Step) -> Any:
        try:
            return await step.invoke("child", "double", {"n": 1, "wait": True}, timeout="1h")
        except df.StepFailed as exc:
            return {"type": exc.error_type, "key": exc.step_key}

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("hurried")
        run = await wait_status(clock_app, run_id, "waiting")
        (child,) = await clock_app.list_runs("double")
        await wait_status(clock_app, child.id, "waiting")
        clock.set(t0 + HOUR - 1)
        await asyncio.sleep(0.1)
        assert (await clock_app.get_run(run_id)).status == "waiting"
        clock.set(t0 + HOUR)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", {"type": "TimeoutError", "key": "child"})


async def test_replay_of_the_parent_does_not_start_a_second_child(app: df.Dataflows) -> None:
    calls = register_child(app)
    bodies = 0

    @app.workflow("replayed")
    async def replayed(event: df.Event, step: df.Step) -> Any:
        nonlocal bodies
        bodies += 1
        # The poke wakes the parent (a replay) while the child is still waiting.
        result, _ = await asyncio.gather(
            step.invoke("child", "double", {"n": 5, "wait": True}),
            step.wait_for_event("poke", "poke", timeout=None),
        )
        await step.wait_for_event("go", "go", timeout=None)  # and a replay after it finished
        return result

    async with app.worker():
        run_id = await app.start("replayed")
        await wait_status(app, run_id, "waiting")
        (child,) = await app.list_runs("double")
        await wait_status(app, child.id, "waiting")
        await app.send("poke", {})
        await eventually(lambda: bodies >= 2)
        await wait_status(app, run_id, "waiting")
        await app.send("release", {})
        assert (await app.wait_for_run(child.id, timeout=10)).status == "completed"
        await eventually(lambda: bodies >= 3)
        await wait_status(app, run_id, "waiting")
        await app.send("go", {})
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", 10)
    assert bodies == 4
    assert [c.id for c in await app.list_runs("double")] == [child.id]
    assert len(calls) == 2  # the child itself: first run and its replay after "release"
