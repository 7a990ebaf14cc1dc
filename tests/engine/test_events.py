"""step.wait_for_event and step.send_event: matching, timeouts, no lost events, dedup, once-only."""

from __future__ import annotations

import asyncio
from typing import Any

import dataflows as df
from dataflows.store.sql_store import SqlStore
from tests.engine.conftest import wait_status, worker

HOUR = 3600.0


def event_json(event: df.Event | None) -> dict[str, Any] | None:
    return None if event is None else {"id": event.id, "name": event.name, "data": event.data}


async def test_wait_returns_the_event(app: df.Dataflows) -> None:
    @app.workflow("approve")
    async def approve(event: df.Event, step: df.Step) -> Any:
        decision = await step.wait_for_event("decision", "approval/decided", timeout=None)
        assert isinstance(decision, df.Event)
        return {**event_json(decision), "ts": decision.ts.timestamp()}  # type: ignore[dict-item]

    async with app.worker():
        run_id = await app.start("approve")
        await wait_status(app, run_id, "waiting")
        sent = await app.send("approval/decided", {"approved": True}, id="decision-1")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result["id"] == sent.event_id == "decision-1"
    assert (run.result["name"], run.result["data"]) == ("approval/decided", {"approved": True})
    assert abs(run.result["ts"] - run.created_at.timestamp()) < 60
    (wait,) = run.steps
    assert (wait.key, wait.kind, wait.status) == ("decision", "wait", "completed")


async def test_match_compares_with_the_triggering_event(app: df.Dataflows) -> None:
    @app.workflow("paid", trigger=df.on_event("order/created"))
    async def paid(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event("paid", "order/paid", match="data.order.id", timeout=None)
        return event_json(got)

    async with app.worker():
        (run_id,) = (await app.send("order/created", {"order": {"id": 7}})).run_ids
        # Sent first, so the oldest candidate: taken only if the filter were ignored.
        await app.send("order/paid", {"order": {"id": 8}}, id="other-order")
        await app.send("order/paid", {"order": {}}, id="no-id")
        await app.send("order/paid", {"order": {"id": 7}}, id="this-order")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result["id"] == "this-order"


async def test_where_filters_on_exact_values(app: df.Dataflows) -> None:
    @app.workflow("where")
    async def where(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event(
            "pick", "ticket/updated", where={"data.state": "done", "data.meta.n": 2}, timeout=None
        )
        return event_json(got)

    async with app.worker():
        run_id = await app.start("where")
        await app.send("ticket/updated", {"state": "open", "meta": {"n": 2}}, id="open")
        await app.send("ticket/updated", {"state": "done", "meta": {"n": 3}}, id="n3")
        await app.send("ticket/updated", {"state": "done"}, id="no-meta")
        await app.send("ticket/other", {"state": "done", "meta": {"n": 2}}, id="other-name")
        await wait_status(app, run_id, "waiting")
        await app.send("ticket/updated", {"state": "done", "meta": {"n": 2}, "x": 1}, id="hit")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result["id"] == "hit"


async def test_match_and_where_combined(app: df.Dataflows) -> None:
    @app.workflow("both")
    async def both(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event(
            "both", "review", match="data.doc", where={"data.verdict": "ok"}, timeout=None
        )
        return event_json(got)

    async with app.worker():
        run_id = await app.start("both", {"doc": "a"})
        await app.send("review", {"doc": "a", "verdict": "no"}, id="wrong-verdict")
        await app.send("review", {"doc": "b", "verdict": "ok"}, id="wrong-doc")
        await app.send("review", {"doc": "a", "verdict": "ok"}, id="hit")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result["id"] == "hit"


async def test_timeout_returns_none_and_not_early(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("impatient")
    async def impatient(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event("reply", "reply", timeout="7d")
        return "timed out" if got is None else got.id

    t0 = clock.now()
    async with clock_app.worker():
        run_id = await clock_app.start("impatient")
        await wait_status(clock_app, run_id, "waiting")
        clock.set(t0 + 7 * 24 * HOUR - 1)
        await asyncio.sleep(0.1)
        assert (await clock_app.get_run(run_id)).status == "waiting"
        clock.set(t0 + 7 * 24 * HOUR)
        run = await clock_app.wait_for_run(run_id, timeout=10)
        # An event after the timeout resolved the wait changes nothing.
        await clock_app.send("reply", {})
    assert (run.status, run.result) == ("completed", "timed out")
    assert (await clock_app.get_run(run_id)).result == "timed out"


async def test_event_before_the_wait_is_reached_is_delivered(app: df.Dataflows) -> None:
    """Guarantee 5: an event that arrives while the run is busy elsewhere is kept for the wait."""
    entered, gate = asyncio.Event(), asyncio.Event()

    async def busy() -> str:
        entered.set()
        await gate.wait()
        return "busy done"

    @app.workflow("late-waiter")
    async def late_waiter(event: df.Event, step: df.Step) -> Any:
        await step.run("busy", busy)
        got = await step.wait_for_event("go", "go", timeout=None)
        return event_json(got)

    async with app.worker():
        run_id = await app.start("late-waiter")
        await asyncio.wait_for(entered.wait(), 10)
        await app.send("go", {"n": 1}, id="early-go")
        assert (await app.get_run(run_id)).status == "running"
        gate.set()
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result["id"] == "early-go"


async def test_event_before_the_run_was_created_is_not_delivered(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("fresh")
    async def fresh(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event("ping", "ping", timeout="1h")
        return event_json(got)

    await clock_app.send("ping", {"n": 0}, id="stale")
    clock.advance(1)
    async with clock_app.worker():
        run_id = await clock_app.start("fresh")
        await wait_status(clock_app, run_id, "waiting")
        await clock_app.send("ping", {"n": 1}, id="fresh")
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.result["id"] == "fresh"


async def test_two_waits_consume_two_events_oldest_first(app: df.Dataflows) -> None:
    @app.workflow("twice")
    async def twice(event: df.Event, step: df.Step) -> Any:
        first = await step.wait_for_event("first", "tick", timeout=None)
        second = await step.wait_for_event("second", "tick", timeout=None)
        assert first is not None and second is not None
        return [first.id, second.id]

    async with app.worker():
        run_id = await app.start("twice")
        for n in range(3):
            await app.send("tick", {"n": n}, id=f"tick-{n}")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result == ["tick-0", "tick-1"]


async def test_same_wait_name_in_a_loop_consumes_distinct_events(app: df.Dataflows) -> None:
    @app.workflow("loop")
    async def loop(event: df.Event, step: df.Step) -> Any:
        got = []
        for _ in range(3):
            ev = await step.wait_for_event("tick", "tick", timeout=None)
            assert ev is not None
            got.append(ev.data["n"])
        return got

    async with app.worker():
        run_id = await app.start("loop")
        for n in range(3):
            await wait_status(app, run_id, "waiting")
            await app.send("tick", {"n": n})
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result == [0, 1, 2]
    assert sorted(s.key for s in run.steps) == ["tick", "tick#2", "tick#3"]


async def test_events_are_deduplicated_by_id(
    clock_app: df.Dataflows, clock: df.ManualClock
) -> None:
    @clock_app.workflow("dedup")
    async def dedup(event: df.Event, step: df.Step) -> Any:
        first = await step.wait_for_event("first", "tick", timeout=None)
        second = await step.wait_for_event("second", "tick", timeout="1h")
        return [event_json(first), event_json(second)]

    async with clock_app.worker():
        run_id = await clock_app.start("dedup")
        one = await clock_app.send("tick", {"n": 1}, id="same")
        again = await clock_app.send("tick", {"n": 2}, id="same")
        assert (one.duplicate, again.duplicate) == (False, True)
        assert one.event_id == again.event_id == "same"
        await wait_status(clock_app, run_id, "waiting")
        run = await clock_app.get_run(run_id)
        assert {s.key: s.status for s in run.steps} == {"first": "completed", "second": "waiting"}
        clock.advance(HOUR)
        run = await clock_app.wait_for_run(run_id, timeout=10)
    assert run.result == [{"id": "same", "name": "tick", "data": {"n": 1}}, None]


async def test_duplicate_trigger_event_starts_runs_once(app: df.Dataflows) -> None:
    @app.workflow("on-hook", trigger=df.on_event("hook/*"))
    async def on_hook(event: df.Event, step: df.Step) -> Any:
        return event.data

    first = await app.send("hook/received", {"n": 1}, id="delivery-1")
    second = await app.send("hook/received", {"n": 1}, id="delivery-1")
    assert len(first.run_ids) == 1
    assert second.duplicate and second.run_ids == first.run_ids
    assert len(await app.list_runs("on-hook")) == 1


async def test_each_waiter_wakes_only_on_its_own_event(app: df.Dataflows) -> None:
    @app.workflow("mine")
    async def mine(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event("mine", "done", match="data.k", timeout=None)
        assert got is not None
        return got.data

    async with app.worker():
        run_ids = {k: await app.start("mine", {"k": k}) for k in range(6)}
        for run_id in run_ids.values():
            await wait_status(app, run_id, "waiting")
        await app.send("done", {"k": 2, "tag": "two"})
        run = await app.wait_for_run(run_ids[2], timeout=10)
        assert run.result == {"k": 2, "tag": "two"}
        for k, run_id in run_ids.items():
            if k != 2:
                assert (await app.get_run(run_id)).status == "waiting"
        for k in (5, 0, 4, 1, 3):
            await app.send("done", {"k": k, "tag": str(k)})
        for k, run_id in run_ids.items():
            run = await app.wait_for_run(run_id, timeout=10)
            assert run.result["k"] == k


async def test_send_event_sends_once_even_on_replay(app: df.Dataflows) -> None:
    bodies = 0

    @app.workflow("sender")
    async def sender(event: df.Event, step: df.Step) -> Any:
        nonlocal bodies
        bodies += 1
        sent_id = await step.send_event("notify", "order/shipped", {"order": 1})
        await step.wait_for_event("go", "go", timeout=None)  # suspend: the next body is a replay
        return sent_id

    @app.workflow("receiver", trigger=df.on_event("order/shipped"))
    async def receiver(event: df.Event, step: df.Step) -> Any:
        return {"id": event.id, "data": event.data}

    async with app.worker():
        run_id = await app.start("sender")
        await wait_status(app, run_id, "waiting")
        await app.send("go", {})
        run = await app.wait_for_run(run_id, timeout=10)
        assert bodies == 2
        (received,) = await app.list_runs("receiver")
        received = await app.wait_for_run(received.id, timeout=10)
    assert run.result == f"{run_id}:notify"
    assert received.result == {"id": f"{run_id}:notify", "data": {"order": 1}}
    send = next(s for s in run.steps if s.key == "notify")
    assert (send.kind, send.status, send.output) == ("send", "completed", f"{run_id}:notify")


async def test_send_event_is_received_by_a_waiting_run(app: df.Dataflows) -> None:
    @app.workflow("listener")
    async def listener(event: df.Event, step: df.Step) -> Any:
        first = await step.wait_for_event("first", "ping", timeout=None)
        assert first is not None
        return first.id

    @app.workflow("pinger")
    async def pinger(event: df.Event, step: df.Step) -> Any:
        return [await step.send_event("ping", "ping", {"n": n}, id=f"custom-{n}") for n in range(2)]

    async with app.worker():
        listener_id = await app.start("listener")
        await wait_status(app, listener_id, "waiting")
        pinger_run = await app.wait_for_run(await app.start("pinger"), timeout=10)
        listened = await app.wait_for_run(listener_id, timeout=10)
    assert pinger_run.result == ["custom-0", "custom-1"]
    assert sorted(s.key for s in pinger_run.steps) == ["ping", "ping#2"]
    assert listened.result == "custom-0"


async def test_concurrent_send_events_share_transactions_and_arrive_once(
    app: df.Dataflows,
) -> None:
    senders = 40
    gate = asyncio.Event()
    entered: set[int] = set()
    all_in = asyncio.Event()

    @app.workflow("sender")
    async def sender(event: df.Event, step: df.Step) -> str:
        n: int = event.data["n"]
        entered.add(n)
        if len(entered) == senders:
            all_in.set()
        await gate.wait()  # every run calls send_event in the same moment
        sent: str = await step.send_event("tell", "told", {"n": n})
        return sent

    @app.workflow("started", trigger=df.on_event("told"))
    async def started(event: df.Event, step: df.Step) -> int:
        n: int = event.data["n"]
        return n

    @app.workflow("waiter")
    async def waiter(event: df.Event, step: df.Step) -> Any:
        got = await step.wait_for_event("told", "told", match="data.n", timeout=None)
        return event_json(got)

    await app.open()
    store = app.store
    assert isinstance(store, SqlStore)
    async with worker(app, concurrency=senders + 8):
        waiters = [await app.start("waiter", {"n": n}) for n in range(senders)]
        for run_id in waiters:
            await wait_status(app, run_id, "waiting")
        ids = [await app.start("sender", {"n": n}) for n in range(senders)]
        await asyncio.wait_for(all_in.wait(), 30)
        before = store.sending_batches
        gate.set()
        runs = [await app.wait_for_run(run_id, timeout=30) for run_id in ids]
        batches = store.sending_batches - before
        woken = [await app.wait_for_run(run_id, timeout=30) for run_id in waiters]
        # Their events were committed before the senders finished: the runs they started exist.
        started_runs = await app.list_runs("started", limit=100)
        for run in started_runs:
            await app.wait_for_run(run.id, timeout=30)
    assert 1 <= batches < senders / 2, f"{batches} transactions for {senders} send_event calls"
    assert [run.result for run in runs] == [f"{run_id}:tell" for run_id in ids]
    # Each event stored once, started its run once and woke the run waiting for it.
    assert [run.result for run in woken] == [
        {"id": f"{ids[n]}:tell", "name": "told", "data": {"n": n}} for n in range(senders)
    ]
    assert sorted(run.event.id for run in started_runs) == sorted(f"{i}:tell" for i in ids)
    for run_id in ids:
        assert (await app.store.get_event(f"{run_id}:tell")) is not None
