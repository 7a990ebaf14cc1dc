"""step.patched: one function carries the old and the new path until the old runs finish."""

from __future__ import annotations

import asyncio
from typing import Any

import dataflows as df
from tests.engine.conftest import MakeApp, wait_status, worker


async def test_old_and_new_runs_take_their_paths_through_one_function(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    @app.workflow("order")
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("charge", lambda: effects.append("charge"))
        await step.wait_for_event("go", "go", match="data.n", timeout=None)
        await step.run("ship", lambda: effects.append("ship"))
        return "v1"

    async with worker(app):
        old = await app.start("order", {"n": 1})
        await wait_status(app, old, "waiting")

    new_app = make_app()
    answers: dict[int, list[bool]] = {}

    @new_app.workflow("order")
    async def v2(event: df.Event, step: df.Step) -> Any:
        n = event.data["n"]
        await step.run("charge", lambda: effects.append(f"charge{n}"))
        fraud = await step.patched("fraud-check")
        answers.setdefault(n, []).append(fraud)
        if fraud:
            await step.run("fraud-check", lambda: effects.append(f"fraud{n}"))
        await step.wait_for_event("go", "go", match="data.n", timeout=None)
        await step.run("ship", lambda: effects.append(f"ship{n}"))
        return "v2 new path" if fraud else "v2 old path"

    async with worker(new_app):
        new = await new_app.start("order", {"n": 2})
        await wait_status(new_app, new, "waiting")
        await new_app.send("go", {"n": 1})
        await new_app.send("go", {"n": 2})
        old_run = await new_app.wait_for_run(old, timeout=15)
        new_run = await new_app.wait_for_run(new, timeout=15)
    assert (old_run.status, old_run.result) == ("completed", "v2 old path")
    assert (new_run.status, new_run.result) == ("completed", "v2 new path")
    assert effects[:3] == ["charge", "charge2", "fraud2"]
    assert sorted(effects[3:]) == ["ship1", "ship2"]
    # Each replay answered as the first time: the answer is recorded (the new run's second
    # replay has recorded steps after the call, and still takes the new path).
    assert answers == {1: [False], 2: [True, True]}
    # The marker is the engine's: not shown among the steps.
    assert [s.key for s in new_run.steps] == ["charge", "fraud-check", "go", "ship"]


async def test_a_run_that_reaches_the_change_at_the_end_of_its_history_takes_the_new_path(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    @app.workflow("flow")
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go", "go", timeout=None)
        return "v1"

    async with worker(app):
        run_id = await app.start("flow")
        await wait_status(app, run_id, "waiting")

    new_app = make_app()

    @new_app.workflow("flow")
    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go", "go", timeout=None)
        return "new" if await step.patched("after-go") else "old"

    async with worker(new_app):
        await new_app.send("go", {})
        run = await new_app.wait_for_run(run_id, timeout=15)
    assert run.result == "new"


async def test_patched_in_a_parallel_branch_waits_for_the_other_branches(
    app: df.Dataflows,
) -> None:
    """A branch asks patched before the other branch has replayed its recorded steps: once the
    replay settles, nothing recorded is left, so the run takes the new path."""
    seen: list[bool] = []

    @app.workflow("flow")
    async def flow(event: df.Event, step: df.Step) -> Any:
        async def first() -> None:
            await step.wait_for_event("go", "go", timeout=None)
            seen.append(await step.patched("p"))

        async def second() -> None:
            await step.run("b1", lambda: 1)
            await step.run("b2", lambda: 2)

        await asyncio.gather(first(), second())
        return seen[-1]

    async with worker(app):
        run_id = await app.start("flow")
        await wait_status(app, run_id, "waiting")
        await app.send("go", {})
        run = await app.wait_for_run(run_id, timeout=15)
    assert (run.status, run.result) == ("completed", True)


async def test_duplicate_patched_id_in_a_run_raises(app: df.Dataflows) -> None:
    @app.workflow("flow")
    async def flow(event: df.Event, step: df.Step) -> Any:
        await step.patched("same")
        await step.patched("same")

    async with worker(app):
        run = await app.wait_for_run(await app.start("flow"), timeout=15)
    assert run.status == "failed" and run.error is not None
    assert run.error["type"] == "ValueError"
    assert "step.patched('same') was called twice" in run.error["message"]


async def test_removing_the_patched_call_later_is_no_divergence(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    """The marker is never an unreached step: once the old runs are gone the call may go."""

    @app.workflow("flow")
    async def v2(event: df.Event, step: df.Step) -> Any:
        if await step.patched("p"):
            await step.run("new", lambda: 1)
        await step.wait_for_event("go", "go", timeout=None)
        return await step.run("after", lambda: "done")

    async with worker(app):
        run_id = await app.start("flow")
        await wait_status(app, run_id, "waiting")

    cleaned = make_app()

    @cleaned.workflow("flow")
    async def v3(event: df.Event, step: df.Step) -> Any:
        await step.run("new", lambda: 1)
        await step.wait_for_event("go", "go", timeout=None)
        return await step.run("after", lambda: "done")

    async with worker(cleaned):
        await cleaned.send("go", {})
        run = await cleaned.wait_for_run(run_id, timeout=15)
    assert (run.status, run.result) == ("completed", "done")
