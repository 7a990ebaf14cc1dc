"""Cancellation: a parent's children go with it, bulk cancel by filter, cancel_on, and a run
cancelled during a sleep held in the worker's memory starts no further step."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import MakeApp, ManualClock, eventually, wait_status, worker
from tests.pg import DbTarget


def register_family(app: df.Dataflows) -> None:
    @app.workflow("grandchild")
    async def grandchild(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("never", "never/happens", timeout=None)

    @app.workflow("child")
    async def child(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("deeper", "grandchild", {})

    @app.workflow("parent")
    async def parent(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("kid", "child", {})


async def test_cancelling_a_parent_cancels_the_children_it_waits_on(app: df.Dataflows) -> None:
    register_family(app)
    async with worker(app):
        parent_id = await app.start("parent")
        await wait_status(app, parent_id, "waiting")

        async def descendants_waiting() -> bool:
            runs = await app.list_runs()
            return sorted((r.workflow_id, r.status) for r in runs) == [
                ("child", "waiting"),
                ("grandchild", "waiting"),
                ("parent", "waiting"),
            ]

        await eventually(descendants_waiting)
        assert await app.cancel(parent_id) == "cancelled"
        runs = {r.workflow_id: r for r in await app.list_runs()}
    assert {w: r.status for w, r in runs.items()} == {
        "parent": "cancelled",
        "child": "cancelled",
        "grandchild": "cancelled",
    }
    assert runs["child"].error is not None
    assert "parent run was cancelled" in runs["child"].error["message"]
    # A finished child is left as it is.
    assert await app.cancel(runs["grandchild"].id) == "cancelled"


async def test_a_cancelled_child_ends_its_parents_invoke_step(app: df.Dataflows) -> None:
    register_family(app)

    @app.workflow("careful")
    async def careful(event: df.Event, step: df.Step) -> Any:
        try:
            await step.invoke("kid", "grandchild", {})
        except df.StepFailed as exc:
            return exc.error_type
        return "finished"

    async with worker(app):
        run_id = await app.start("careful")
        await wait_status(app, run_id, "waiting")
        await eventually(lambda: _has_status(app, "grandchild", "waiting"))
        (kid,) = await app.list_runs("grandchild")
        assert await app.cancel(kid.id) == "cancelled"
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "Cancelled")


async def _has_status(app: df.Dataflows, workflow_id: str, status: str) -> bool:
    return any(r.status == status for r in await app.list_runs(workflow_id))


async def test_bulk_cancel_by_workflow_status_and_time(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    app = clock_app

    @app.workflow("a", trigger=df.on_event("go"))
    async def a(event: df.Event, step: df.Step) -> Any:
        return None

    @app.workflow("b", trigger=df.on_event("go"))
    async def b(event: df.Event, step: df.Step) -> Any:
        return None

    for n in range(7):
        await app.send("go", {"n": n})
        clock.advance(10)
    runs = sorted(await app.list_runs("a"), key=lambda r: (r.created_at, r.id))
    assert len(runs) == 7
    # The oldest two of "a", by time range, one per batch.
    cut = runs[1].created_at + timedelta(seconds=5)
    n = await app.cancel_runs(workflow_id="a", created_before=cut, batch=1)
    assert n == 2
    assert [r.status for r in await app.list_runs("a")][-3:] == ["queued", "cancelled", "cancelled"]
    after = await app.cancel_runs(
        workflow_id="a", created_after=runs[5].created_at - timedelta(seconds=5)
    )
    assert after == 2
    # The rest of "a" (queued), in batches of 2.
    rest = await app.cancel_runs(workflow_id="a", status=["queued"], batch=2)
    assert n + after + rest == 7
    assert {r.status for r in await app.list_runs("a")} == {"cancelled"}
    assert {r.status for r in await app.list_runs("b")} == {"queued"}
    # Nothing left to match: 0.
    assert await app.cancel_runs(workflow_id="a") == 0
    assert await app.cancel_runs(status="waiting") == 0
    later = datetime.now(UTC).replace(year=2100)
    assert await app.cancel_runs(created_after=later) == 0
    assert await app.cancel_runs(status="queued", created_before=later) == 7
    assert {r.status for r in await app.list_runs("b")} == {"cancelled"}


async def test_bulk_cancel_takes_the_children_along(app: df.Dataflows) -> None:
    register_family(app)
    async with worker(app):
        parent_id = await app.start("parent")
        await eventually(lambda: _has_status(app, "grandchild", "waiting"))
        await wait_status(app, parent_id, "waiting")
        assert await app.cancel_runs(workflow_id="parent", status="waiting") == 1
    assert {r.status for r in await app.list_runs()} == {"cancelled"}


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": "completed"},
        {"status": []},
        {"workflow_id": "a", "status": ["queued", "failed"]},
    ],
)
async def test_bulk_cancel_refuses_bad_filters(app: df.Dataflows, filters: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="filter|status"):
        await app.cancel_runs(**filters)


def test_bulk_cancel_from_blocking_code(app: df.Dataflows) -> None:
    @app.workflow("a", trigger=df.on_event("go"))
    async def a(event: df.Event, step: df.Step) -> Any:
        return None

    app.blocking.send("go", {})
    assert app.blocking.cancel_runs(workflow_id="a") == 1
    app.blocking.close()


# -- cancel_on --------------------------------------------------------------------------------------


def register_order(app: df.Dataflows, started: list[tuple[str, int]], **options: Any) -> None:
    """``order`` waits for its payment, then ships; a cancelled order cancels it."""

    def mark(name: str, order: int) -> None:
        started.append((name, order))

    @app.workflow(
        "order",
        trigger=df.on_event("order/created"),
        cancel_on=[df.on_event("order/cancelled", match="data.id")],
        **options,
    )
    async def order(event: df.Event, step: df.Step) -> Any:
        order_id = event.data["id"]
        await step.run("reserve", mark, "reserve", order_id)
        await step.wait_for_event("paid", "order/paid", match="data.id", timeout=None)
        await step.run("ship", mark, "ship", order_id)
        return "shipped"


async def test_cancel_on_cancels_the_matching_waiting_run(app: df.Dataflows) -> None:
    started: list[tuple[str, int]] = []
    register_order(app, started)
    async with worker(app):
        one = (await app.send("order/created", {"id": 1})).run_ids[0]
        two = (await app.send("order/created", {"id": 2})).run_ids[0]
        await wait_status(app, one, "waiting")
        await wait_status(app, two, "waiting")
        sent = await app.send("order/cancelled", {"id": 1})
        assert sent.resumed_run_ids == ()
        # Cancelled by the intake itself: before send returned.
        cancelled = await app.get_run(one)
        assert cancelled.status == "cancelled"
        assert cancelled.error is not None and sent.event_id in cancelled.error["message"]
        assert [s.key for s in cancelled.steps] == ["reserve"]  # the watch is not shown
        assert (await app.get_run(two)).status == "waiting"
        await app.send("order/paid", {"id": 1})
        await app.send("order/paid", {"id": 2})
        assert (await app.wait_for_run(two, timeout=10)).result == "shipped"
        await asyncio.sleep(0.1)
    assert (await app.get_run(one)).status == "cancelled"
    assert sorted(started) == [("reserve", 1), ("reserve", 2), ("ship", 2)]


async def test_cancel_on_an_event_before_the_run_was_first_claimed(app: df.Dataflows) -> None:
    started: list[tuple[str, int]] = []
    register_order(app, started)
    run_id = (await app.send("order/created", {"id": 7})).run_ids[0]
    await app.send("order/cancelled", {"id": 8})
    await app.send("order/cancelled", {"id": 7})
    other = (await app.send("order/created", {"id": 8})).run_ids[0]  # after its cancel: runs
    async with worker(app):
        run = await app.wait_for_run(run_id, timeout=10)
        await wait_status(app, other, "waiting")
    assert run.status == "cancelled"
    assert started == [("reserve", 8)]


async def test_cancel_on_stops_a_running_run_after_its_current_step(app: df.Dataflows) -> None:
    started: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        started.append("slow")
        inside.set()
        await release.wait()
        return "done"

    @app.workflow(
        "job",
        trigger=df.on_event("job/start"),
        cancel_on=[df.on_event("job/stop", match="data.job.id")],
    )
    async def job(event: df.Event, step: df.Step) -> Any:
        await step.run("slow", slow)
        await step.run("next", lambda: started.append("next"))
        return "finished"

    async with worker(app):
        run_id = (await app.send("job/start", {"job": {"id": "j1"}})).run_ids[0]
        await asyncio.wait_for(inside.wait(), 10)
        await app.send("job/stop", {"job": {"id": "j1"}})
        assert (await app.get_run(run_id)).status == "cancelled"
        release.set()
        await asyncio.sleep(0.3)
        run = await app.get_run(run_id)
    assert run.status == "cancelled"
    assert started == ["slow"]
    assert run.steps == ()  # the slow step's result was refused


async def test_cancel_on_cancels_the_children_too(app: df.Dataflows) -> None:
    register_family(app)

    @app.workflow(
        "boss",
        trigger=df.on_event("boss/start"),
        cancel_on=[df.on_event("boss/stop", match="data.n")],
    )
    async def boss(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("kid", "child", {})

    async with worker(app):
        run_id = (await app.send("boss/start", {"n": 1})).run_ids[0]
        await eventually(lambda: _has_status(app, "grandchild", "waiting"))
        await app.send("boss/stop", {"n": 1})
        statuses = {r.workflow_id: r.status for r in await app.list_runs()}
    assert statuses == {"boss": "cancelled", "child": "cancelled", "grandchild": "cancelled"}
    assert (await app.get_run(run_id)).status == "cancelled"


async def test_cancel_on_without_match_cancels_every_run(app: df.Dataflows) -> None:
    @app.workflow("w", trigger=df.on_event("w/start"), cancel_on=[df.on_event("everything/stop")])
    async def w(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("never", "never/happens", timeout=None)

    async with worker(app):
        ids = [(await app.send("w/start", {"n": n})).run_ids[0] for n in range(3)]
        for run_id in ids:
            await wait_status(app, run_id, "waiting")
        await app.send("everything/stop", {})
        assert {(await app.get_run(i)).status for i in ids} == {"cancelled"}


async def test_a_run_retried_after_its_cancel_on_event_goes_on(app: df.Dataflows) -> None:
    """A retry is an operator's decision to go on: the event that cancelled the run, and one
    that came while it was cancelled, do not cancel it again; a new one after the retry does."""
    started: list[tuple[str, int]] = []
    register_order(app, started)
    async with worker(app):
        run_id = (await app.send("order/created", {"id": 1})).run_ids[0]
        await wait_status(app, run_id, "waiting")
        first = await app.send("order/cancelled", {"id": 1})
        assert (await app.get_run(run_id)).status == "cancelled"
        await app.send("order/cancelled", {"id": 1})  # again, while it is cancelled
        assert await app.retry(run_id) == "queued"
        await wait_status(app, run_id, "waiting")  # waits for its payment again
        await app.send("order/paid", {"id": 1})
        run = await app.wait_for_run(run_id, timeout=10)
        assert (run.status, run.result) == ("completed", "shipped")
        assert [s.key for s in run.steps] == ["reserve", "paid", "ship"]  # no watch, no mark

        # Cancelled again, retried, then a new cancelling event: it cancels the run again.
        other = (await app.send("order/created", {"id": 2})).run_ids[0]
        await wait_status(app, other, "waiting")
        await app.send("order/cancelled", {"id": 2})
        assert (await app.get_run(other)).status == "cancelled"
        assert await app.retry(other) == "queued"
        await wait_status(app, other, "waiting")
        again = await app.send("order/cancelled", {"id": 2})
        cancelled = await app.get_run(other)
        assert cancelled.status == "cancelled"
        assert cancelled.error is not None and again.event_id in cancelled.error["message"]
    assert first.event_id not in cancelled.error["message"]
    assert sorted(started) == [("reserve", 1), ("reserve", 2), ("ship", 1)]


async def test_a_retry_of_a_run_cancelled_before_its_first_claim(app: df.Dataflows) -> None:
    """The cancelling event came before the watch was registered (it is found by the claim);
    after the retry it is not, and an event sent between the retry and the next claim is."""
    started: list[tuple[str, int]] = []
    register_order(app, started)
    run_id = (await app.send("order/created", {"id": 7})).run_ids[0]
    await app.send("order/cancelled", {"id": 7})
    async with worker(app):
        assert (await app.wait_for_run(run_id, timeout=10)).status == "cancelled"
    assert started == []
    assert await app.retry(run_id) == "queued"
    async with worker(app):
        await wait_status(app, run_id, "waiting")
        await app.send("order/paid", {"id": 7})
        assert (await app.wait_for_run(run_id, timeout=10)).result == "shipped"

    # Cancelled by a call and retried: an event before the retry does not cancel it, one
    # after it does (found by the claim, which cancels it before its first step).
    retried = (await app.send("order/created", {"id": 8})).run_ids[0]
    await app.cancel(retried)
    await app.send("order/cancelled", {"id": 8})  # while it is cancelled: not for the retry
    assert await app.retry(retried) == "queued"
    async with worker(app):
        await wait_status(app, retried, "waiting")
    await app.cancel(retried)
    assert await app.retry(retried) == "queued"
    await app.send("order/cancelled", {"id": 8})  # after the retry, before its claim
    async with worker(app):
        run = await app.wait_for_run(retried, timeout=10)
    assert run.status == "cancelled"
    assert started == [("reserve", 7), ("ship", 7), ("reserve", 8)]


@pytest.mark.parametrize(
    ("cancel_on", "message"),
    [
        ("order/cancelled", "cancel_on must be a list"),
        ([df.cron("* * * * *")], "cancel_on must hold df.on_event"),
        ([df.on_event("order/*")], "must be an exact event name"),
        ([df.on_event("order/cancelled", match="id")], "match='id' is not a dotted path"),
        ([df.on_event("order/cancelled", match="data.")], "is not a dotted path"),
        ([df.on_event("order/cancelled", match="data..id")], "is not a dotted path"),
    ],
)
def test_cancel_on_is_checked_at_registration(
    app: df.Dataflows, cancel_on: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as exc:
        app.workflow("bad", cancel_on=cancel_on)
    assert str(exc.value).startswith("workflow 'bad': cancel_on")


def test_match_belongs_to_cancel_on_only(app: df.Dataflows) -> None:
    with pytest.raises(ValueError, match="only applies in cancel_on"):
        app.workflow("bad", trigger=df.on_event("x", match="data.id"))


# -- sleeps held in memory --------------------------------------------------------------------------


async def test_a_run_cancelled_during_a_sleep_held_in_memory_starts_no_further_step(
    app: df.Dataflows,
) -> None:
    started: list[str] = []
    asleep = asyncio.Event()

    def mark(name: str) -> None:
        started.append(name)
        if name == "before":
            asleep.set()

    @app.workflow("napper")
    async def napper(event: df.Event, step: df.Step) -> Any:
        await step.run("before", mark, "before")
        await step.sleep("nap", "1s")
        await step.run("after", mark, "after")
        return "woke"

    async with worker(app):  # its heartbeat (every 10 s) would notice far too late
        run_id = await app.start("napper")
        await asyncio.wait_for(asleep.wait(), 10)
        await asyncio.sleep(0.2)  # inside the sleep, held in memory: the run is running
        assert (await app.get_run(run_id)).status == "running"
        assert await app.cancel(run_id) == "cancelled"
        await asyncio.sleep(1.5)
    assert started == ["before"]
    run = await app.get_run(run_id)
    assert run.status == "cancelled"
    assert [s.key for s in run.steps] == ["before"]


async def test_cancel_on_of_a_child_ends_its_parents_invoke_step(app: df.Dataflows) -> None:
    @app.workflow(
        "payment",
        cancel_on=[df.on_event("payment/void", match="data.payment")],
    )
    async def payment(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("settled", "payment/settled", match="data.payment", timeout=None)
        return "paid"

    @app.workflow("checkout")
    async def checkout(event: df.Event, step: df.Step) -> Any:
        try:
            return await step.invoke("pay", "payment", {"payment": "p1"})
        except df.StepFailed as exc:
            return f"{exc.error_type}: {exc.error_message}"

    async with worker(app):
        run_id = await app.start("checkout")
        await eventually(lambda: _has_status(app, "payment", "waiting"))
        sent = await app.send("payment/void", {"payment": "p1"})
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result == f"Cancelled: cancelled by event {sent.event_id} (payment/void)"
    (child,) = await app.list_runs("payment")
    assert child.status == "cancelled"


async def test_a_run_cancelled_during_a_retry_backoff_held_in_memory_makes_no_further_attempt(
    app: df.Dataflows,
) -> None:
    attempts: list[float] = []
    failed = asyncio.Event()

    def flaky() -> None:
        attempts.append(time.monotonic())
        failed.set()
        raise df.RetryAfterError(1.0)

    @app.workflow("flaky", retries=3)
    async def flaky_workflow(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", flaky)

    async with worker(app):
        run_id = await app.start("flaky")
        await asyncio.wait_for(failed.wait(), 10)
        await asyncio.sleep(0.2)  # inside the 1 s backoff, held in memory
        assert (await app.get_run(run_id)).status == "running"
        assert await app.cancel(run_id) == "cancelled"
        await asyncio.sleep(1.5)
    assert len(attempts) == 1
    assert (await app.get_run(run_id)).status == "cancelled"


@pytest.mark.parametrize("how", ["app.cancel", "cancel_on"])
async def test_a_cancel_ends_a_retry_backoff_held_in_memory_at_once(
    app: df.Dataflows, how: str
) -> None:
    """The cancel notification interrupts a backoff held in memory as it does a sleep: the
    worker slot is free at once, not when the backoff (up to inline_retry_limit) ends."""
    attempts: list[int] = []
    failed = asyncio.Event()

    def flaky(n: int) -> None:
        attempts.append(n)
        failed.set()
        raise df.RetryAfterError(1.8)

    @app.workflow(
        "flaky",
        trigger=df.on_event("flaky/start"),
        retries=3,
        cancel_on=[df.on_event("flaky/stop", match="data.n")],
    )
    async def flaky_workflow(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", flaky, event.data["n"])

    async with worker(app) as w:  # heartbeats every 10 s: the notification does it
        run_id = (await app.send("flaky/start", {"n": 1})).run_ids[0]
        await asyncio.wait_for(failed.wait(), 10)
        await asyncio.sleep(0.2)  # inside the 1.8 s backoff, held in memory
        assert (await app.get_run(run_id)).status == "running"
        assert run_id in w._active
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        if how == "app.cancel":
            assert await app.cancel(run_id) == "cancelled"
        else:
            await app.send("flaky/stop", {"n": 1})
        await eventually(lambda: run_id not in w._active, timeout=5)
        assert loop.time() - cancelled_at < 1.0  # long before the backoff's end
        await asyncio.sleep(2.0)
    assert attempts == [1]
    run = await app.get_run(run_id)
    assert run.status == "cancelled"
    assert [(s.key, s.status, s.attempts) for s in run.steps] == [("call", "retrying", 1)]


async def test_a_stopping_worker_suspends_a_run_in_a_retry_backoff(app: df.Dataflows) -> None:
    """Stopping the worker ends a backoff held in memory at once, as it does a sleep: the run
    waits for its retry in the store, and another worker makes the next attempt then."""
    attempts: list[float] = []
    failed = asyncio.Event()

    def flaky() -> str:
        attempts.append(time.monotonic())
        failed.set()
        if len(attempts) == 1:
            raise df.RetryAfterError(1.5)
        return "ok"

    @app.workflow("flaky", retries=3)
    async def flaky_workflow(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", flaky)

    w = worker(app)
    await w.__aenter__()
    run_id = await app.start("flaky")
    await asyncio.wait_for(failed.wait(), 10)
    await asyncio.sleep(0.1)  # inside the backoff, held in memory
    loop = asyncio.get_running_loop()
    stopping = loop.time()
    await w.__aexit__(None, None, None)
    assert loop.time() - stopping < 1.0  # it did not wait for the backoff's end
    run = await app.get_run(run_id)
    assert (run.status, run.wait_reason) == ("waiting", "retry call")
    async with worker(app):
        run = await app.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "ok")
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 1.4


async def test_a_cancel_notification_ends_a_held_sleep_at_once(app: df.Dataflows) -> None:
    asleep = asyncio.Event()

    @app.workflow("long-nap")
    async def long_nap(event: df.Event, step: df.Step) -> Any:
        await step.run("before", asleep.set)
        await step.sleep("nap", "1.8s")
        await step.run("after", lambda: None)

    async with worker(app) as w:  # heartbeats every 10 s: the notification does it
        run_id = await app.start("long-nap")
        await asyncio.wait_for(asleep.wait(), 10)
        await asyncio.sleep(0.2)
        assert run_id in w._active
        assert await app.cancel(run_id) == "cancelled"
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        await eventually(lambda: run_id not in w._active, timeout=5)
        assert loop.time() - cancelled_at < 1.0  # the slot is free long before the nap's end
    run = await app.get_run(run_id)
    assert [s.key for s in run.steps] == ["before"]


@pytest.mark.parametrize("sender", ["the worker's app", "another app"])
async def test_a_cancel_on_event_ends_a_held_sleep_at_once(
    make_app: MakeApp, db: DbTarget, sender: str
) -> None:
    """A run cancelled by a cancel_on event at intake is dropped by the worker holding it as
    one cancelled by ``app.cancel`` is: at the notification, not at its next heartbeat.
    "another app" sends from a store of its own, as another process would: PostgreSQL's
    NOTIFY reaches the worker. SQLite wakes only the workers of the sending store: from another
    app the worker drops the run at its next look instead (the nap's end at the latest), and
    still starts no further step."""
    woken = sender == "the worker's app" or not db.url.startswith("sqlite")
    app = make_app()
    asleep = asyncio.Event()
    started: list[str] = []

    def register(target: df.Dataflows) -> None:
        @target.workflow(
            "long-nap",
            trigger=df.on_event("nap/start"),
            cancel_on=[df.on_event("nap/stop", match="data.id")],
        )
        async def long_nap(event: df.Event, step: df.Step) -> Any:
            await step.run("before", asleep.set)
            await step.sleep("nap", "1.8s")
            await step.run("after", started.append, "after")

    register(app)
    other = app if sender == "the worker's app" else make_app()
    if other is not app:
        register(other)
        await other.open()
    async with worker(app) as w:  # heartbeats every 10 s: the notification does it
        run_id = (await app.send("nap/start", {"id": 1})).run_ids[0]
        await asyncio.wait_for(asleep.wait(), 10)
        await asyncio.sleep(0.2)  # the cancel watch registered, the nap held in memory
        assert run_id in w._active
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        sent = await other.send("nap/stop", {"id": 1})
        assert sent.run_ids == sent.resumed_run_ids == ()  # it starts and wakes nothing
        assert (await app.get_run(run_id)).status == "cancelled"
        await eventually(lambda: run_id not in w._active, timeout=5)
        if woken:
            assert loop.time() - cancelled_at < 1.0  # the slot is free long before the nap's end
        await asyncio.sleep(1.8)
    assert started == []
    run = await app.get_run(run_id)
    assert run.status == "cancelled"
    assert [s.key for s in run.steps] == ["before"]


@pytest.mark.parametrize("how", ["cancel_on", "app.cancel"])
async def test_children_cancelled_with_their_parent_tell_it_alike(
    app: df.Dataflows, how: str
) -> None:
    """However the top run was cancelled, each run cancelled with it sends its own parent
    ``run.finished`` (cancelled), as a child cancelled directly does: a retry of the middle
    run then finds its child's end instead of waiting for it for ever."""

    @app.workflow("leaf")
    async def leaf(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("never", "never/happens", timeout=None)

    @app.workflow("middle")
    async def middle(event: df.Event, step: df.Step) -> Any:
        try:
            return await step.invoke("kid", "leaf", {})
        except df.StepFailed as exc:
            return f"{exc.error_type}: {exc.error_message}"

    @app.workflow(
        "boss",
        trigger=df.on_event("boss/start"),
        cancel_on=[df.on_event("boss/stop", match="data.n")],
    )
    async def boss(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("kid", "middle", {})

    async with worker(app):
        run_id = (await app.send("boss/start", {"n": 1})).run_ids[0]
        await eventually(lambda: _has_status(app, "leaf", "waiting"))
        if how == "cancel_on":
            await app.send("boss/stop", {"n": 1})
        else:
            assert await app.cancel(run_id) == "cancelled"
        runs = {r.workflow_id: r for r in await app.list_runs()}
        assert {w: r.status for w, r in runs.items()} == dict.fromkeys(
            ("boss", "middle", "leaf"), "cancelled"
        )
        # The leaf's end was sent to the middle run: retried, its invoke ends with it at once.
        assert await app.retry(runs["middle"].id) == "queued"
        run = await app.wait_for_run(runs["middle"].id, timeout=5)
    assert (run.status, run.result) == ("completed", "Cancelled: the parent run was cancelled")
