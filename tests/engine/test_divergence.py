"""A replay that asks to run a step that is not in its history while recorded steps remain
unreached diverged: the run fails with NonDeterminismError before the new step does anything,
and app.retry resumes it once the code is fixed. Parallel branches, loops, sleeps, waits,
sends, invokes and retrying steps replay without false alarms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import dataflows as df
from tests.engine.conftest import MakeApp, ManualClock, eventually, wait_status, worker

Flow = Callable[[df.Event, df.Step], Awaitable[Any]]


def effect(effects: list[str], name: str) -> Callable[[], str]:
    def run() -> str:
        effects.append(name)
        return name

    return run


async def suspend_v1(app: df.Dataflows, fn: Flow, wf: str = "flow") -> str:
    """Start a run of ``fn`` as version 1 and return its id once it is waiting."""
    app.workflow(wf)(fn)
    async with worker(app):
        run_id = await app.start(wf)
        await wait_status(app, run_id, "waiting")
    return run_id


async def resume_v2(
    app: df.Dataflows, fn: Flow, run_id: str, *, send: str | None = "go", wf: str = "flow"
) -> df.Run:
    """Deploy ``fn`` as the next version and let the run go on (``send`` wakes it)."""
    app.workflow(wf)(fn)
    async with worker(app):
        if send is not None:
            await app.send(send, {})
        return await app.wait_for_run(run_id, timeout=15)


def diverged(run: df.Run, asked: str, recorded: str) -> None:
    assert run.status == "failed", run
    assert run.error is not None and run.error["type"] == "NonDeterminismError", run.error
    message = run.error["message"]
    assert f"step {asked!r} is new but recorded steps {recorded} were not reached" in message


async def test_renamed_step_fails_without_running_and_retry_resumes(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("charge", effect(effects, "charge"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("email", effect(effects, "email"))
        return "v1"

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("charge-v2", effect(effects, "charge-v2"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("email", effect(effects, "email"))
        return "v2"

    run_id = await suspend_v1(app, v1)
    run = await resume_v2(make_app(), v2, run_id)
    diverged(run, "charge-v2", "'charge', 'go'")
    assert effects == ["charge"]  # the renamed step did nothing

    fixed = make_app()  # the fix is deployed: the run resumes from its history
    fixed.workflow("flow")(v1)
    async with worker(fixed):
        await fixed.retry(run_id)
        run = await fixed.wait_for_run(run_id, timeout=15)
    assert (run.status, run.result) == ("completed", "v1")
    assert effects == ["charge", "email"]


async def test_removed_step_diverges_at_the_next_new_step(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.run("b", effect(effects, "b"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("c", effect(effects, "c"))

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("c", effect(effects, "c"))

    run = await resume_v2(make_app(), v2, await suspend_v1(app, v1))
    diverged(run, "c", "'b'")
    assert effects == ["a", "b"]


async def test_step_moved_before_recorded_ones_diverges(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("c", effect(effects, "c"))

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.run("c", effect(effects, "c"))  # moved before the wait
        await step.wait_for_event("go", "go", timeout=None)

    run = await resume_v2(make_app(), v2, await suspend_v1(app, v1))
    diverged(run, "c", "'go'")
    assert effects == ["a"]


async def test_steps_added_after_the_recorded_ones_are_compatible(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.wait_for_event("go", "go", timeout=None)
        return "v1"

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("added", effect(effects, "added"))
        return "v2"

    run = await resume_v2(make_app(), v2, await suspend_v1(app, v1))
    assert (run.status, run.result) == ("completed", "v2")
    assert effects == ["a", "added"]


async def test_recorded_steps_left_unreached_at_return_are_no_divergence(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", lambda: 1)
        await step.wait_for_event("go", "go", timeout=None)
        return "v1"

    async def v2(event: df.Event, step: df.Step) -> Any:
        return await step.run("a", lambda: 2)  # the wait was removed: nothing new runs

    run = await resume_v2(make_app(), v2, await suspend_v1(app, v1))
    assert (run.status, run.result) == ("completed", 1)


# -- parallel steps ------------------------------------------------------------------------------


def branches(effects: list[str], *, rename: str | None = None, add: bool = False) -> Flow:
    """Two branches: the first waits for "go" before its new step, the second records three
    steps (and with ``add`` one more after them); ``rename`` renames that recorded step."""

    async def first(step: df.Step) -> None:
        await step.run("a1", effect(effects, "a1"))
        await step.sleep("pause", 0.5)  # the second branch records its steps meanwhile
        await step.wait_for_event("go", "go", timeout=None)
        await step.run("a2", effect(effects, "a2"))

    async def second(step: df.Step) -> None:
        for name in ("c1", "c2", "c3"):
            if name == rename:
                name += "-v2"
            await step.run(name, effect(effects, name))
        if add:
            await step.run("c4", effect(effects, "c4"))

    async def flow(event: df.Event, step: df.Step) -> Any:
        await asyncio.gather(first(step), second(step))
        return await step.run("end", effect(effects, "end"))

    return flow


async def test_gather_branch_ahead_of_the_others_is_no_divergence(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    """On replay the first branch reaches its new step "a2" before the second branch has
    started; "c1" … "c3" are still unreached then, and reached once the replay settles."""
    effects: list[str] = []
    run_id = await suspend_v1(app, branches(effects))
    assert sorted(effects) == ["a1", "c1", "c2", "c3"]
    run = await resume_v2(make_app(), branches(effects, add=True), run_id)
    assert (run.status, run.result) == ("completed", "end")
    assert sorted(effects) == ["a1", "a2", "c1", "c2", "c3", "c4", "end"]


async def test_gather_renamed_step_in_one_branch_diverges(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    run_id = await suspend_v1(app, branches(effects))
    run = await resume_v2(make_app(), branches(effects, rename="c2"), run_id)
    assert run.status == "failed" and run.error is not None
    assert run.error["type"] == "NonDeterminismError"
    assert "recorded steps 'c2'" in run.error["message"]
    assert sorted(effects) == ["a1", "c1", "c2", "c3"]  # neither a2 nor c2-v2 ran


async def test_nested_gathers_replay_without_false_alarms(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def leaf(step: df.Step, name: str, depth: int) -> None:
        if depth:
            await asyncio.gather(
                leaf(step, f"{name}.0", depth - 1), leaf(step, f"{name}.1", depth - 1)
            )
        else:
            await step.run(name, effect(effects, name))

    async def flow(event: df.Event, step: df.Step) -> Any:
        async def ahead() -> None:
            await step.wait_for_event("go", "go", timeout=None)
            await step.run("after", effect(effects, "after"))

        await asyncio.gather(ahead(), leaf(step, "x", 4))
        return len(effects)

    run_id = await suspend_v1(app, flow)
    assert len(effects) == 16
    effects.clear()
    run = await resume_v2(make_app(), flow, run_id)
    assert run.status == "completed", run.error
    assert effects == ["after"]


# -- loops, sleeps, waits, sends, invokes, retries ---------------------------------------------------


async def test_loop_keys_replay_and_a_step_inserted_in_a_loop_diverges(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []

    def loop(insert: bool) -> Flow:
        async def flow(event: df.Event, step: df.Step) -> Any:
            for i in range(2):
                await step.run("item", effect(effects, f"item{i}"))
                if insert:
                    await step.run("log", effect(effects, "log"))
            await step.wait_for_event("go", "go", timeout=None)
            for i in range(2, 4):
                await step.run("item", effect(effects, f"item{i}"))
            return "done"

        return flow

    compatible = await suspend_v1(app, loop(False))
    run = await resume_v2(make_app(), loop(False), compatible)
    assert (run.status, run.result) == ("completed", "done")
    assert effects == ["item0", "item1", "item2", "item3"]

    effects.clear()
    first = make_app()
    changed = await suspend_v1(first, loop(False), wf="flow2")
    run = await resume_v2(make_app(), loop(True), changed, wf="flow2")
    diverged(run, "log", "'item#2', 'go'")
    assert effects == ["item0", "item1"]


async def test_renamed_sleep_diverges(
    clock_app: df.Dataflows, clock: ManualClock, make_app: MakeApp
) -> None:
    effects: list[str] = []

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.sleep("nap", "1h")

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("a", effect(effects, "a"))
        await step.sleep("nap-v2", "1h")

    run_id = await suspend_v1(clock_app, v1)
    new_app = make_app(clock=clock)
    new_app.workflow("flow")(v2)
    async with worker(new_app):
        clock.advance(3601)
        run = await new_app.wait_for_run(run_id, timeout=15)
    diverged(run, "nap-v2", "'nap'")


async def test_renamed_wait_diverges(app: df.Dataflows, make_app: MakeApp) -> None:
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go", "go", timeout=None)

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go-v2", "go", timeout=None)

    run = await resume_v2(make_app(), v2, await suspend_v1(app, v1))
    diverged(run, "go-v2", "'go'")


async def test_renamed_send_diverges_without_sending(app: df.Dataflows, make_app: MakeApp) -> None:
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.send_event("notify", "note", {})
        await step.wait_for_event("go", "go", timeout=None)

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.send_event("notify-v2", "note", {})
        await step.wait_for_event("go", "go", timeout=None)

    run_id = await suspend_v1(app, v1)
    new_app = make_app()
    listened: list[str] = []

    @new_app.workflow("listener", trigger=df.on_event("note"))
    async def listener(event: df.Event, step: df.Step) -> Any:
        listened.append(event.id)

    run = await resume_v2(new_app, v2, run_id)
    diverged(run, "notify-v2", "'notify', 'go'")
    assert not any(i.endswith(":notify-v2") for i in listened)


async def test_renamed_invoke_starts_no_child(app: df.Dataflows, make_app: MakeApp) -> None:
    async def child(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("release", "release", timeout=None)
        return "child"

    async def v1(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("call", "child", {})

    async def v2(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("call-v2", "child", {})

    app.workflow("child")(child)
    run_id = await suspend_v1(app, v1)
    new_app = make_app()
    new_app.workflow("child")(child)
    run = await resume_v2(new_app, v2, run_id, send="release")
    diverged(run, "call-v2", "'call'")
    assert len(await new_app.list_runs(workflow_id="child")) == 1


async def test_renamed_retrying_step_diverges(
    clock_app: df.Dataflows, clock: ManualClock, make_app: MakeApp
) -> None:
    effects: list[str] = []

    def flaky() -> None:
        effects.append("flaky")
        raise RuntimeError("down")

    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("flaky", flaky, retry=df.RetryPolicy(retries=3, initial=600, jitter=0))

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("steady", effect(effects, "steady"))

    run_id = await suspend_v1(clock_app, v1)
    new_app = make_app(clock=clock)
    new_app.workflow("flow")(v2)
    async with worker(new_app):
        clock.advance(3600)
        run = await new_app.wait_for_run(run_id, timeout=15)
    diverged(run, "steady", "'flaky'")
    assert effects == ["flaky"]


async def test_budgeted_step_renamed_takes_no_unit(app: df.Dataflows, make_app: MakeApp) -> None:
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.run("a", lambda: 1)
        await step.wait_for_event("go", "go", timeout=None)

    run_id = await suspend_v1(app, v1)
    new_app = make_app()
    new_app.rate_limit("api", limit=1, period="1h")
    calls: list[int] = []

    async def v2(event: df.Event, step: df.Step) -> Any:
        await step.run("a-v2", lambda: calls.append(1), rate_limit="api")
        await step.wait_for_event("go", "go", timeout=None)

    run = await resume_v2(new_app, v2, run_id)
    diverged(run, "a-v2", "'a', 'go'")
    assert calls == []

    @new_app.workflow("other")
    async def other(event: df.Event, step: df.Step) -> Any:
        return await step.run("b", lambda: 2, rate_limit="api")

    async with worker(new_app):  # the budget's one unit is still free
        other_id = await new_app.start("other")
        done = await new_app.wait_for_run(other_id, timeout=15)
    assert (done.status, done.result) == ("completed", 2)


async def test_new_run_is_not_slowed_by_the_rule(app: df.Dataflows) -> None:
    """A run without history never waits: its new steps run at once."""

    @app.workflow("quick")
    async def quick(event: df.Event, step: df.Step) -> Any:
        return [await step.run(f"s{i}", lambda i=i: i) for i in range(5)]

    async with worker(app):
        run = await app.wait_for_run(await app.start("quick"), timeout=15)
    assert run.result == [0, 1, 2, 3, 4]


async def test_branch_ahead_while_another_waits_for_an_event_is_no_divergence(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    """One branch wakes from its sleep and reaches its new step while the other still waits
    for its event: the run suspends again (no verdict), and goes on when the event comes."""
    effects: list[str] = []

    @clock_app.workflow("flow")
    async def flow(event: df.Event, step: df.Step) -> Any:
        async def first() -> None:
            await step.run("a1", effect(effects, "a1"))
            await step.sleep("nap", "1h")
            await step.run("a2", effect(effects, "a2"))

        async def second() -> None:
            await step.run("b1", effect(effects, "b1"))
            await step.wait_for_event("go", "go", timeout=None)
            await step.run("b2", effect(effects, "b2"))

        await asyncio.gather(first(), second())
        return "done"

    async with worker(clock_app):
        run_id = await clock_app.start("flow")
        await wait_status(clock_app, run_id, "waiting")
        clock.advance(3601)
        await eventually(lambda: "a2" in effects)  # the first branch went on after its nap
        run = await wait_status(clock_app, run_id, "waiting")  # the second waits for "go"
        assert run.error is None
        await clock_app.send("go", {})
        run = await clock_app.wait_for_run(run_id, timeout=15)
    assert (run.status, run.result) == ("completed", "done")
    assert sorted(effects) == ["a1", "a2", "b1", "b2"]
