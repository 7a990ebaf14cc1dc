"""Replay divergence is caught (guarantee 7), and engine control flow survives `except Exception`."""

from __future__ import annotations

from typing import Any

import dataflows as df
from tests.engine.conftest import MakeApp, wait_status


async def _run_v1(app: df.Dataflows, effects: list[str]) -> str:
    """Version 1 records step "x" as a ``step.run`` and then waits for "go"."""

    @app.workflow("evolving")
    async def evolving(event: df.Event, step: df.Step) -> Any:
        await step.run("x", lambda: effects.append("x ran"))
        await step.wait_for_event("go", "go", timeout=None)
        return "v1"

    async with app.worker():
        run_id = await app.start("evolving")
        run = await wait_status(app, run_id, "waiting")
    assert {s.key: (s.kind, s.status) for s in run.steps} == {
        "x": ("run", "completed"),
        "go": ("wait", "waiting"),
    }
    return run_id


async def test_step_of_another_kind_fails_the_run_with_non_determinism(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    run_id = await _run_v1(app, effects)
    new_app = make_app()  # the next deployment, with changed code, on the same store

    @new_app.workflow("evolving")
    async def evolving(event: df.Event, step: df.Step) -> Any:
        await step.sleep("x", "1s")  # was a step.run in the recorded history
        await step.run("y", lambda: effects.append("y ran"))
        return "v2"

    async with new_app.worker():
        await new_app.send("go", {})
        run = await new_app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["type"] == "NonDeterminismError"
    assert "'x'" in run.error["message"]
    assert effects == ["x ran"]  # nothing ran again, nothing new ran
    # The event was delivered to the pending wait when it was stored, before any replay.
    assert {s.key: (s.kind, s.status) for s in run.steps} == {
        "x": ("run", "completed"),
        "go": ("wait", "completed"),
    }


async def test_user_except_exception_cannot_swallow_non_determinism(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    run_id = await _run_v1(app, effects)
    new_app = make_app()  # the next deployment, with changed code, on the same store
    swallowed: list[str] = []

    @new_app.workflow("evolving")
    async def evolving(event: df.Event, step: df.Step) -> Any:
        try:
            await step.wait_for_event("x", "other", timeout=None)  # was a step.run
        except Exception as exc:
            swallowed.append(type(exc).__name__)
        try:
            await step.run("y", lambda: effects.append("y ran"))
        except Exception as exc:
            swallowed.append(type(exc).__name__)
        return "pretends all is well"

    async with new_app.worker():
        await new_app.send("go", {})
        run = await new_app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    assert run.result is None
    assert run.error is not None and run.error["type"] == "NonDeterminismError"
    assert "'x'" in run.error["message"]
    assert swallowed == ["NonDeterminismError", "NonDeterminismError"]
    assert effects == ["x ran"]


async def test_suspension_cannot_be_swallowed_by_except_exception(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    swallowed = 0
    after = 0

    @clock_app.workflow("stubborn")
    async def stubborn(event: df.Event, step: df.Step) -> Any:
        nonlocal swallowed, after
        try:
            await step.sleep("nap", "1h")
        except Exception:
            swallowed += 1
        after += 1
        return "woke"

    async with clock_app.worker():
        run_id = await clock_app.start("stubborn")
        run = await wait_status(clock_app, run_id, "waiting")
        assert run.wait_reason is not None and "nap" in run.wait_reason
        assert (swallowed, after) == (0, 0)
        clock.advance(3600)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "woke")
    assert (swallowed, after) == (0, 1)
