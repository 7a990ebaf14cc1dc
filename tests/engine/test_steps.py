"""The step API: memoized steps, replay, keys, parallel steps, the step context, starting runs."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import eventually, step_named, worker

#: Worker options under which every retry suspends the run, so the next attempt replays the
#: workflow function from the top: the cheapest way to force a real replay.
REPLAYING: dict[str, Any] = {"inline_retry_limit": 0}


def fails_first(calls: list[int], times: int = 1) -> Callable[[], str]:
    """A step function that asks to be retried on its first ``times`` calls, then returns "ok"."""

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise df.RetryAfterError(0.01)
        return "ok"

    return fn


async def run_to_end(
    app: df.Dataflows, workflow_id: str, data: dict[str, Any] | None = None, **options: Any
) -> df.Run:
    async with worker(app, **options):
        run_id = await app.start(workflow_id, data or {})
        return await app.wait_for_run(run_id, timeout=10)


# -- memoization and replay ---------------------------------------------------------------------


async def test_finished_step_never_runs_again_when_the_run_replays(app: df.Dataflows) -> None:
    bodies: list[str] = []
    one: list[int] = []
    two: list[int] = []
    flaky: list[int] = []

    def first() -> str:
        one.append(1)
        return uuid.uuid4().hex  # a different value on every call: replay must not call it

    async def second(token: str) -> str:
        two.append(1)
        return token.upper()

    @app.workflow("memo")
    async def memo(event: df.Event, step: df.Step) -> list[str]:
        token = await step.run("one", first)
        bodies.append(token)
        shout = await step.run("two", second, token)
        await step.run("flaky", fails_first(flaky, times=2))
        return [token, shout]

    run = await run_to_end(app, "memo", **REPLAYING)

    assert run.status == "completed"
    assert len(bodies) == 3, "two retries that suspend mean two replays from the top"
    assert len(set(bodies)) == 1, "every replay got the recorded value of step 'one'"
    assert (len(one), len(two), len(flaky)) == (1, 1, 3)
    assert run.result == [bodies[0], bodies[0].upper()]
    assert [(s.key, s.status, s.attempts) for s in run.steps] == [
        ("one", "completed", 1),
        ("two", "completed", 1),
        ("flaky", "completed", 3),
    ]


async def test_step_result_is_recorded_before_the_next_line_runs(app: df.Dataflows) -> None:
    seen: dict[str, Any] = {}

    async def snapshot(label: str) -> None:
        run = await app.get_run(df.current_step().run_id)
        seen[label] = {s.key: (s.status, s.output) for s in run.steps}

    @app.workflow("ordered")
    async def ordered(event: df.Event, step: df.Step) -> None:
        await step.run("one", lambda: {"n": 1})
        run = await app.get_run(step.run_id)
        seen["after one"] = {s.key: (s.status, s.output) for s in run.steps}
        await step.run("two", snapshot, "inside two")

    run = await run_to_end(app, "ordered")

    assert run.status == "completed"
    assert seen["after one"] == {"one": ("completed", {"n": 1})}
    assert seen["inside two"] == {"one": ("completed", {"n": 1})}, "two is not recorded yet"


async def test_results_come_back_as_json_on_first_run_and_on_replay(app: df.Dataflows) -> None:
    seen: list[Any] = []
    flaky: list[int] = []

    @app.workflow("json")
    async def as_json(event: df.Event, step: df.Step) -> Any:
        value = await step.run("tuple", lambda: (1, "a", {"k": (2.5, None)}, {7: True}))
        seen.append(value)
        await step.run("flaky", fails_first(flaky))
        return value

    run = await run_to_end(app, "json", **REPLAYING)

    expected = [1, "a", {"k": [2.5, None]}, {"7": True}]
    assert run.status == "completed"
    assert seen == [expected, expected], "the first run sees the stored JSON, not the tuple"
    assert all(type(v) is list for v in seen)
    assert run.result == expected
    assert step_named(run, "tuple").output == expected


# -- how step functions are called ----------------------------------------------------------------


async def test_sync_step_runs_in_a_thread_without_blocking_the_loop(app: df.Dataflows) -> None:
    entered, release = threading.Event(), threading.Event()
    loop_thread = threading.get_ident()

    def blocking() -> dict[str, bool]:
        entered.set()
        # Released by the test's coroutine: only possible while the event loop keeps running.
        return {"released": release.wait(5), "off_loop": threading.get_ident() != loop_thread}

    @app.workflow("sync")
    async def sync(event: df.Event, step: df.Step) -> Any:
        return await step.run("blocking", blocking)

    async with worker(app):
        run_id = await app.start("sync")
        await eventually(entered.is_set)
        release.set()
        run = await app.wait_for_run(run_id, timeout=10)

    assert run.result == {"released": True, "off_loop": True}


async def test_async_step_runs_on_the_event_loop(app: df.Dataflows) -> None:
    loop_thread = threading.get_ident()

    async def fetch(n: int) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"n": n, "on_loop": threading.get_ident() == loop_thread}

    @app.workflow("async")
    async def run_async(event: df.Event, step: df.Step) -> Any:
        return await step.run("fetch", fetch, 3)

    run = await run_to_end(app, "async")

    assert run.status == "completed"
    assert run.result == {"n": 3, "on_loop": True}


async def test_step_fn_gets_its_arguments_positionally(app: df.Dataflows) -> None:
    received: list[tuple[Any, ...]] = []

    def record(*args: Any, **kwargs: Any) -> list[Any]:
        received.append((args, kwargs))
        return list(args)

    async def scaled(value: int, *, factor: int) -> int:
        return value * factor

    @app.workflow("args")
    async def with_args(event: df.Event, step: df.Step) -> Any:
        plain = await step.run("plain", record, 2, "b", [3])
        part = await step.run("partial", functools.partial(scaled, 4, factor=10))
        lam = await step.run("lambda", lambda: scaled(5, factor=3))
        return [plain, part, lam]

    run = await run_to_end(app, "args")

    assert run.result == [[2, "b", [3]], 40, 15]
    assert received == [((2, "b", [3]), {})]


# -- step keys ------------------------------------------------------------------------------------


async def test_repeated_names_are_keyed_name_hash_n(app: df.Dataflows) -> None:
    calls: list[int] = []
    flaky: list[int] = []

    def item(i: int) -> int:
        calls.append(i)
        return i * i

    @app.workflow("loop")
    async def loop(event: df.Event, step: df.Step) -> list[int]:
        squares = [await step.run("item", item, i) for i in range(1, 4)]
        await step.run("flaky", fails_first(flaky))
        squares.append(await step.run("item", item, 4))
        return squares

    run = await run_to_end(app, "loop", **REPLAYING)

    assert run.result == [1, 4, 9, 16]
    assert calls == [1, 2, 3, 4], "the replay reused item, item#2, item#3"
    assert [(s.key, s.output) for s in run.steps if s.key.startswith("item")] == [
        ("item", 1),
        ("item#2", 4),
        ("item#3", 9),
        ("item#4", 16),
    ]


async def test_numbered_keys_never_collide_with_a_name_containing_hash(app: df.Dataflows) -> None:
    calls: list[str] = []
    flaky: list[int] = []

    def make(label: str) -> Callable[[], str]:
        return lambda: calls.append(label) or label  # type: ignore[func-returns-value]

    @app.workflow("hash")
    async def hashed(event: df.Event, step: df.Step) -> list[str]:
        results = [
            await step.run("item#2", make("explicit")),
            await step.run("item", make("first")),
            await step.run("item", make("second")),  # "item#2" is taken: keyed "item#3"
            await step.run("x", make("x1")),
            await step.run("x", make("x2")),
            await step.run("x#2", make("explicit x#2")),  # taken by the 2nd "x": "x#2#2"
        ]
        await step.run("flaky", fails_first(flaky))
        return results

    run = await run_to_end(app, "hash", **REPLAYING)

    expected = ["explicit", "first", "second", "x1", "x2", "explicit x#2"]
    assert run.status == "completed" and run.recoveries == 0
    assert run.result == expected and calls == expected
    assert [(s.key, s.output) for s in run.steps][:6] == [
        ("item#2", "explicit"),
        ("item", "first"),
        ("item#3", "second"),
        ("x", "x1"),
        ("x#2", "x2"),
        ("x#2#2", "explicit x#2"),
    ]


async def test_parallel_steps_record_all_and_replay_in_argument_order(app: df.Dataflows) -> None:
    calls: list[str] = []
    flaky: list[int] = []

    async def slow(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        calls.append(name)
        return name

    def sync(name: str) -> str:
        calls.append(name)
        return name

    @app.workflow("fan-out")
    async def fan_out(event: df.Event, step: df.Step) -> Any:
        # Finishing order (c, b, a) is the reverse of the argument order.
        first = await asyncio.gather(
            step.run("a", slow, "a", 0.15), step.run("b", slow, "b", 0.05), step.run("c", sync, "c")
        )
        # The same name twice: keys follow the call order, not the finishing order.
        second = await asyncio.gather(step.run("p", slow, "p1", 0.1), step.run("p", slow, "p2", 0))
        await step.run("flaky", fails_first(flaky))
        return [first, second]

    run = await run_to_end(app, "fan-out", **REPLAYING)

    assert run.status == "completed"
    assert run.result == [["a", "b", "c"], ["p1", "p2"]]
    assert sorted(calls) == ["a", "b", "c", "p1", "p2"], "each ran once despite the replay"
    outputs = {s.key: s.output for s in run.steps}
    assert outputs == {"a": "a", "b": "b", "c": "c", "p": "p1", "p#2": "p2", "flaky": "ok"}


# -- the step context -------------------------------------------------------------------------------


async def test_current_step_inside_step_functions(app: df.Dataflows) -> None:
    contexts: list[df.StepContext] = []
    outside: list[str] = []

    def sync_probe() -> None:
        contexts.append(df.current_step())

    async def async_probe() -> None:
        contexts.append(df.current_step())

    @app.workflow("ctx")
    async def ctx(event: df.Event, step: df.Step) -> str:
        await step.run("charge", sync_probe)
        await step.run("charge", async_probe)
        try:
            df.current_step()
        except RuntimeError as exc:
            outside.append(str(exc))
        return step.run_id

    run = await run_to_end(app, "ctx")

    assert run.status == "completed"
    assert [(c.run_id, c.step_key, c.attempt, c.workflow_id) for c in contexts] == [
        (run.id, "charge", 1, "ctx"),
        (run.id, "charge#2", 1, "ctx"),
    ]
    assert [c.idempotency_key for c in contexts] == [f"{run.id}:charge", f"{run.id}:charge#2"]
    assert outside and "inside a step" in outside[0], "the workflow body is not a step"
    with pytest.raises(RuntimeError):
        df.current_step()


# -- run outcomes -------------------------------------------------------------------------------------


async def test_workflow_result_is_stored_and_the_run_completes(app: df.Dataflows) -> None:
    @app.workflow("done")
    async def done(event: df.Event, step: df.Step) -> dict[str, Any]:
        doubled = await step.run("double", lambda: event.data["x"] * 2)
        return {"doubled": doubled, "event": event.name}

    run = await run_to_end(app, "done", {"x": 21})

    assert run.status == "completed"
    assert run.result == {"doubled": 42, "event": run.event.name}
    assert run.error is None and run.completed_at is not None
    assert run.event.data == {"x": 21}
    assert (await app.get_run(run.id)).result == {"doubled": 42, "event": run.event.name}


async def test_workflow_exception_fails_the_run_with_its_error(app: df.Dataflows) -> None:
    @app.workflow("broken")
    async def broken(event: df.Event, step: df.Step) -> None:
        await step.run("fine", lambda: 1)
        raise ValueError("bad input 42")

    run = await run_to_end(app, "broken")

    assert run.status == "failed"
    assert run.result is None
    assert run.error is not None
    assert (run.error["type"], run.error["message"]) == ("ValueError", "bad input 42")
    assert "bad input 42" in run.error["traceback"] and "broken" in run.error["traceback"]
    assert step_named(run, "fine").status == "completed"


# -- starting runs --------------------------------------------------------------------------------------


async def test_start_with_idempotency_key_creates_one_run(app: df.Dataflows) -> None:
    bodies: list[str] = []

    @app.workflow("once")
    async def once(event: df.Event, step: df.Step) -> None:
        bodies.append(event.data["n"])

    @app.workflow("other")
    async def other(event: df.Event, step: df.Step) -> None:
        bodies.append(event.data["n"])

    first = await app.start("once", {"n": "first"}, idempotency_key="order-1")
    again = await app.start("once", {"n": "second"}, idempotency_key="order-1")
    fresh = await app.start("once", {"n": "fresh"}, idempotency_key="order-2")
    elsewhere = await app.start("other", {"n": "other"}, idempotency_key="order-1")

    assert again == first
    assert len({first, fresh, elsewhere}) == 3, "keys are per workflow"
    assert {r.id for r in await app.list_runs(workflow_id="once")} == {fresh, first}
    async with worker(app):
        for run_id in (first, fresh, elsewhere):
            await app.wait_for_run(run_id, timeout=10)
    assert sorted(bodies) == ["first", "fresh", "other"]
    assert (await app.get_run(first)).event.data == {"n": "first"}


async def test_send_with_the_same_event_id_is_deduplicated(app: df.Dataflows) -> None:
    @app.workflow("on-order", trigger=df.on_event("order/created"))
    async def on_order(event: df.Event, step: df.Step) -> Any:
        return event.data

    first = await app.send("order/created", {"n": 1}, id="evt-1")
    second = await app.send("order/created", {"n": 2}, id="evt-1")

    assert first.event_id == second.event_id == "evt-1"
    assert len(first.run_ids) == 1 and second.run_ids == first.run_ids
    assert (first.duplicate, second.duplicate) == (False, True)
    assert len(await app.list_runs(workflow_id="on-order")) == 1
    run = await app.get_run(first.run_ids[0])
    assert run.event.id == "evt-1" and run.event.data == {"n": 1}

    unheard = await app.send("nobody/listens", {"n": 3})
    assert unheard.run_ids == () and not unheard.duplicate
    fresh = await app.send("order/created", {"n": 4})
    assert fresh.event_id not in ("evt-1", unheard.event_id) and len(fresh.run_ids) == 1


async def test_list_runs_filters_by_workflow_and_status(app: df.Dataflows) -> None:
    @app.workflow("good")
    async def good(event: df.Event, step: df.Step) -> int:
        return 1

    @app.workflow("bad")
    async def bad(event: df.Event, step: df.Step) -> None:
        raise RuntimeError("no")

    goods = [await app.start("good") for _ in range(3)]
    bads = [await app.start("bad") for _ in range(2)]
    queued = await app.list_runs(status="queued")
    assert {r.id for r in queued} == set(goods + bads)

    async with worker(app):
        for run_id in goods + bads:
            await app.wait_for_run(run_id, timeout=10)

    def ids(runs: list[df.Run]) -> set[str]:
        return {r.id for r in runs}

    assert ids(await app.list_runs(workflow_id="good")) == set(goods)
    assert ids(await app.list_runs(status="failed")) == set(bads)
    assert ids(await app.list_runs(workflow_id="good", status="completed")) == set(goods)
    assert await app.list_runs(workflow_id="good", status="failed") == []
    assert await app.list_runs(status="queued") == []
    assert len(await app.list_runs(limit=2)) == 2
    assert await app.list_runs(workflow_id="missing") == []
    newest_first = await app.list_runs()
    assert [r.created_at for r in newest_first] == sorted(
        (r.created_at for r in newest_first), reverse=True
    )


async def test_wildcard_triggers_match_by_prefix(app: df.Dataflows) -> None:
    @app.workflow("all-shop", trigger=df.on_event("shop/*"))
    async def all_shop(event: df.Event, step: df.Step) -> None: ...

    @app.workflow("orders", trigger=[df.on_event("shop/order"), df.on_event("pos/order")])
    async def orders(event: df.Event, step: df.Step) -> None: ...

    async def started(name: str) -> list[str]:
        result = await app.send(name, {})
        return sorted([(await app.get_run(r)).workflow_id for r in result.run_ids])

    assert await started("shop/order") == ["all-shop", "orders"]
    assert await started("shop/refund/partial") == ["all-shop"]
    assert await started("pos/order") == ["orders"]
    assert await started("shopx") == []
    assert await started("other/shop/order") == []
    with pytest.raises(ValueError):
        df.on_event("shop/*/created")


# -- registration -------------------------------------------------------------------------------------


def test_duplicate_workflow_id_raises_at_registration(tmp_path: Path) -> None:
    app = df.Dataflows(f"sqlite:///{tmp_path / 'unused.db'}")

    @app.workflow("twice")
    async def first(event: df.Event, step: df.Step) -> str:
        return "first"

    with pytest.raises(df.DuplicateWorkflow) as raised:

        @app.workflow("twice")
        async def second(event: df.Event, step: df.Step) -> str:
            return "second"

    assert raised.value.workflow_id == "twice" and isinstance(raised.value, ValueError)
    assert app.registry.get("twice").fn is first


async def test_starting_an_unknown_workflow_raises(app: df.Dataflows) -> None:
    @app.workflow("known")
    async def known(event: df.Event, step: df.Step) -> None: ...

    with pytest.raises(df.UnknownWorkflow) as raised:
        await app.start("unknown", {})

    assert raised.value.workflow_id == "unknown"
    assert await app.list_runs() == []
