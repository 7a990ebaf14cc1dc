"""Concurrency limits and priority through the app and a worker, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import ManualClock, eventually, wait_status, worker


class Gate:
    """Runs that enter hold there until the test opens; who is inside, and who came in when."""

    def __init__(self) -> None:
        self.inside: set[str] = set()
        self.entered: list[str] = []
        self.most = 0
        self._open = asyncio.Event()

    async def enter(self, name: str) -> None:
        self.inside.add(name)
        self.entered.append(name)
        self.most = max(self.most, len(self.inside))
        try:
            await self._open.wait()
        finally:
            self.inside.discard(name)

    def open(self) -> None:
        self._open.set()


# -- registration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"concurrency": 0}, "concurrency limit=0"),
        ({"concurrency": -2}, "concurrency limit=-2"),
        ({"concurrency": df.Concurrency(1.5)}, "concurrency limit=1.5"),  # type: ignore[arg-type]
        ({"concurrency": df.Concurrency(1, key="customer_id")}, "concurrency key='customer_id'"),
        ({"concurrency": df.Concurrency(1, key="data.")}, "concurrency key='data.'"),
        ({"concurrency": df.Concurrency(1, key=7)}, "concurrency key=7"),  # type: ignore[arg-type]
        ({"priority": "high"}, "priority='high'"),
        ({"start_timeout": "soon"}, "start_timeout='soon'"),
        ({"start_timeout": 0}, "start_timeout=0"),
        ({"idempotency": "order_id"}, "idempotency key='order_id'"),
        ({"rate_limit": df.RateLimit(0, "1h")}, "rate_limit limit=0"),
        ({"rate_limit": df.RateLimit(1, "often")}, "rate_limit period='often'"),
        ({"rate_limit": df.RateLimit(1, "1h", key="x y")}, "rate_limit key='x y'"),
    ],
)
def test_bad_options_fail_at_registration_naming_workflow_and_option(
    options: dict[str, Any], named: str
) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError) as caught:
        app.workflow("sync-order", **options)
    assert "'sync-order'" in str(caught.value) and named in str(caught.value)


# -- concurrency -----------------------------------------------------------------------------------


async def test_at_most_limit_runs_per_key_execute_and_keys_go_in_parallel(
    app: df.Dataflows,
) -> None:
    gates = {"a": Gate(), "b": Gate(), "": Gate()}

    @app.workflow(
        "sync", trigger=df.on_event("order"), concurrency=df.Concurrency(2, key="data.customer")
    )
    async def sync(event: df.Event, step: df.Step) -> None:
        await gates[event.data.get("customer", "")].enter(event.id)

    async with worker(app, concurrency=20):
        sent = [await app.send("order", {"customer": c}) for c in "aaaabbb"]
        sent += [await app.send("order", {}) for _ in range(3)]  # no key: the key ""
        await eventually(lambda: [len(g.inside) for g in gates.values()] == [2, 2, 2])
        await asyncio.sleep(0.1)
        assert [len(g.inside) for g in gates.values()] == [2, 2, 2]
        held = await app.get_run(sent[2].run_ids[0])
        assert (held.status, held.wait_reason) == ("queued", "concurrency sync/a")
        assert "queued (concurrency sync/a)" in str(held)
        for gate in gates.values():
            gate.open()
        runs = [await app.wait_for_run(s.run_ids[0], timeout=10) for s in sent]
    assert {r.status for r in runs} == {"completed"}
    assert [g.most for g in gates.values()] == [2, 2, 2]


async def test_a_key_function_and_a_whole_workflow_limit(app: df.Dataflows) -> None:
    gate = Gate()

    @app.workflow(
        "by-fn",
        trigger=df.on_event("job"),
        concurrency=df.Concurrency(1, key=lambda e: e.data["n"] % 2),
    )
    async def by_fn(event: df.Event, step: df.Step) -> None:
        await gate.enter(event.id)

    other = Gate()

    @app.workflow("whole", trigger=df.on_event("job"), concurrency=3)
    async def whole(event: df.Event, step: df.Step) -> None:
        await other.enter(event.id)

    async with worker(app, concurrency=20):
        sent = [await app.send("job", {"n": n}) for n in range(6)]
        await eventually(lambda: len(gate.inside) == 2 and len(other.inside) == 3)
        await asyncio.sleep(0.1)
        assert (len(gate.inside), len(other.inside)) == (2, 3)
        gate.open()
        other.open()
        for s in sent:
            for run_id in s.run_ids:
                assert (await app.wait_for_run(run_id, timeout=10)).status == "completed"
    assert (gate.most, other.most) == (2, 3)


async def test_a_sleeping_run_holds_no_slot(clock_app: df.Dataflows, clock: ManualClock) -> None:
    log: list[str] = []

    @clock_app.workflow("nap", trigger=df.on_event("nap"), concurrency=1)
    async def nap(event: df.Event, step: df.Step) -> None:
        n = event.data["n"]
        await step.run("before", lambda: log.append(f"{n} before"))
        await step.sleep("rest", "1s")  # short enough to be held in memory, were it not limited
        await step.run("after", lambda: log.append(f"{n} after"))

    async with worker(clock_app):
        first = (await clock_app.send("nap", {"n": 1})).run_ids[0]
        await wait_status(clock_app, first, "waiting")
        second = (await clock_app.send("nap", {"n": 2})).run_ids[0]
        await wait_status(clock_app, second, "waiting")
        assert log == ["1 before", "2 before"]
        clock.advance(2)
        for run_id in (first, second):
            assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"
    assert sorted(log[2:]) == ["1 after", "2 after"]


async def test_with_one_slot_free_the_higher_priority_run_starts_first(
    app: df.Dataflows,
) -> None:
    gate = Gate()
    started: list[str] = []

    @app.workflow(
        "ranked",
        trigger=df.on_event("ranked"),
        concurrency=1,
        priority=lambda e: 10 if e.data.get("vip") else 0,
    )
    async def ranked(event: df.Event, step: df.Step) -> None:
        started.append(event.data["name"])
        if event.data["name"] == "first":
            await gate.enter("first")

    async with worker(app):
        first = await app.send("ranked", {"name": "first"})
        await eventually(lambda: started == ["first"])
        rest = [
            await app.send("ranked", {"name": name, "vip": vip})
            for name, vip in [("old", False), ("vip", True), ("newer", False), ("vip2", True)]
        ]
        await asyncio.sleep(0.1)
        assert started == ["first"]
        gate.open()
        for s in [first, *rest]:
            await app.wait_for_run(s.run_ids[0], timeout=10)
    assert started == ["first", "vip", "vip2", "old", "newer"]


async def test_started_and_child_runs_take_their_workflow_limit(app: df.Dataflows) -> None:
    gate = Gate()

    @app.workflow("child", concurrency=df.Concurrency(1, key="data.k"))
    async def child(event: df.Event, step: df.Step) -> None:
        await gate.enter(event.id)

    @app.workflow("parent")
    async def parent(event: df.Event, step: df.Step) -> None:
        await step.invoke("c", "child", {"k": 1})

    async with worker(app, concurrency=10):
        runs = [await app.start("child", {"k": 1}), await app.start("parent")]
        await eventually(lambda: len(gate.inside) == 1)
        await asyncio.sleep(0.1)
        assert len(gate.inside) == 1
        gate.open()
        for run_id in runs:
            assert (await app.wait_for_run(run_id, timeout=10)).status == "completed"
    assert gate.most == 1


def test_priority_and_key_are_computed_from_the_triggering_event() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    rank: Callable[[df.Event], int] = lambda e: 2**40 if e.data.get("big") else -1  # noqa: E731

    @app.workflow(
        "w",
        trigger=df.on_event("e"),
        concurrency=df.Concurrency(1, key="data.customer.id"),
        priority=rank,
    )
    async def w(event: df.Event, step: df.Step) -> None: ...

    from dataflows.intake import event_intake

    def run_of(data: dict[str, Any]) -> tuple[str | None, int]:
        [run] = event_intake(app.registry, "e", data, event_id=None, now=0.0, limit=10_000).runs
        return (run.concurrency_key, run.priority)

    assert run_of({"customer": {"id": 42}, "big": True}) == ("42", 2**31 - 1)
    assert run_of({"customer": {"id": "x"}}) == ("x", -1)
    assert run_of({"customer": {}}) == ("", -1)  # a key that is missing is ""
    assert run_of({"customer": None}) == ("", -1)


# -- start timeout ---------------------------------------------------------------------------------


async def test_a_run_not_started_within_start_timeout_is_cancelled(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    gate = Gate()

    @clock_app.workflow("slow", trigger=df.on_event("slow"), concurrency=1, start_timeout="1h")
    async def slow(event: df.Event, step: df.Step) -> None:
        await gate.enter(event.id)

    async with worker(clock_app):
        first = (await clock_app.send("slow", {})).run_ids[0]
        await eventually(lambda: len(gate.inside) == 1)
        second = (await clock_app.send("slow", {})).run_ids[0]
        clock.advance(3599)
        await asyncio.sleep(0.2)
        assert (await clock_app.get_run(second)).status == "queued"
        clock.advance(2)
        late = await clock_app.wait_for_run(second, timeout=10)
        assert late.status == "cancelled" and late.error is not None
        assert late.error["type"] == "StartTimeout"
        gate.open()  # the first run started in time: it finishes, however long it takes
        assert (await clock_app.wait_for_run(first, timeout=10)).status == "completed"


# -- idempotency -----------------------------------------------------------------------------------


async def test_at_most_one_run_per_idempotency_key_per_day(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    @clock_app.workflow("sync", trigger=df.on_event("order"), idempotency="data.order_id")
    async def sync(event: df.Event, step: df.Step) -> int:
        return int(event.data["n"])

    @clock_app.workflow("audit", trigger=df.on_event("order"))
    async def audit(event: df.Event, step: df.Step) -> None: ...

    first = await clock_app.send("order", {"order_id": 7, "n": 1})
    assert len(first.run_ids) == 2 and first.skipped == ()
    clock.advance(3600)
    again = await clock_app.send("order", {"order_id": 7, "n": 2})
    assert len(again.run_ids) == 1  # audit's run only
    assert again.skipped == (("sync", "idempotency 7"),)
    other = await clock_app.send("order", {"order_id": 8, "n": 3})
    assert len(other.run_ids) == 2
    # app.start computes the key too: the run of the day answers.
    started = await clock_app.start("sync", {"order_id": 7, "n": 4})
    assert started in first.run_ids
    clock.advance(24 * 3600)
    assert len((await clock_app.send("order", {"order_id": 7, "n": 5})).run_ids) == 2


# -- rate limit ------------------------------------------------------------------------------------


async def test_starts_over_the_rate_limit_create_no_run_and_say_so(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    @clock_app.workflow(
        "notify",
        trigger=df.on_event("order"),
        rate_limit=df.RateLimit(limit=1, period="1h", key="data.order_id"),
    )
    async def notify(event: df.Event, step: df.Step) -> None: ...

    first = await clock_app.send("order", {"order_id": 7})
    assert len(first.run_ids) == 1 and first.skipped == ()
    clock.advance(1800)
    again = await clock_app.send("order", {"order_id": 7})
    assert again.run_ids == ()
    assert again.skipped == (("notify", "rate limit 7: 1 per 3600s"),)
    assert len((await clock_app.send("order", {"order_id": 8})).run_ids) == 1
    assert len(await clock_app.list_runs("notify")) == 2
    clock.advance(1801)
    assert len((await clock_app.send("order", {"order_id": 7})).run_ids) == 1
