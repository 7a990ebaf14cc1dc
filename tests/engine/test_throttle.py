"""Throttles through the app and a worker, on both stores: starts per key are delayed, never
dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import ManualClock, eventually, worker


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"throttle": df.Throttle(0, "1m")}, "throttle limit=0"),
        ({"throttle": df.Throttle(-1, "1m")}, "throttle limit=-1"),
        ({"throttle": df.Throttle(1, "often")}, "throttle period='often'"),
        ({"throttle": df.Throttle(1, 0)}, "throttle period=0"),
        ({"throttle": df.Throttle(1, "1m", key="shop")}, "throttle key='shop'"),
        ({"throttle": df.Throttle(1, "1m", key=7)}, "throttle key=7"),  # type: ignore[arg-type]
        ({"throttle": 5}, "throttle=5"),
        (
            {
                "throttle": df.Throttle(1, "1m", key="data.shop"),
                "concurrency": df.Concurrency(1, key="data.order"),
            },
            "throttle key='data.shop'",
        ),
    ],
)
def test_bad_throttles_fail_at_registration_naming_workflow_and_option(
    options: dict[str, Any], named: str
) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError) as caught:
        app.workflow("sync-order", **options)
    assert "'sync-order'" in str(caught.value) and named in str(caught.value)


async def test_starts_per_key_never_pass_the_limit_in_any_window_and_none_is_lost(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    started: list[tuple[str, int, float]] = []

    @clock_app.workflow(
        "sync", trigger=df.on_event("order"), throttle=df.Throttle(2, "1m", key="data.shop")
    )
    async def sync(event: df.Event, step: df.Step) -> None:
        started.append((event.data.get("shop", ""), event.data["n"], clock.now()))

    sent = []
    events: list[dict[str, Any]] = [{"shop": "a", "n": n} for n in range(5)]
    events += [{"shop": "b", "n": n} for n in range(3)]
    events += [{"n": n} for n in range(3)]  # key ""
    for data in events:
        sent.append(await clock_app.send("order", data))
        clock.advance(0.01)  # oldest first: each run created after the one before
    run_ids = [r for s in sent for r in s.run_ids]
    assert len(run_ids) == 11 and all(not s.skipped for s in sent)
    async with worker(clock_app):
        await eventually(lambda: len(started) == 6)
        await asyncio.sleep(0.3)  # no more start within the window
        assert len(started) == 6
        waiting = await clock_app.get_run(run_ids[2])
        assert (waiting.status, waiting.wait_reason) == ("queued", "throttle sync/a")
        listed = {r.id: r for r in await clock_app.list_runs(workflow_id="sync", status="queued")}
        assert listed[run_ids[-1]].wait_reason == "throttle sync"  # the key ""
        clock.advance(30)
        await asyncio.sleep(0.3)
        assert len(started) == 6  # the window is a sliding minute
        clock.advance(31)
        await eventually(lambda: len(started) == 10)
        clock.advance(61)
        await eventually(lambda: len(started) == 11)
        for run_id in run_ids:
            assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"
    for key in ("a", "b", ""):
        mine = [(n, t) for k, n, t in started if k == key]
        assert [n for n, _ in mine] == sorted(n for n, _ in mine)  # oldest first
        times = [t for _, t in mine]
        for t in times:
            assert sum(1 for u in times if t <= u < t + 60) <= 2


async def test_a_throttled_run_that_sleeps_is_not_throttled_again(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    log: list[str] = []

    @clock_app.workflow("nap", trigger=df.on_event("nap"), throttle=df.Throttle(1, "1h"))
    async def nap(event: df.Event, step: df.Step) -> None:
        await step.run("before", lambda: log.append("before"))
        await step.sleep("rest", "10m")
        await step.run("after", lambda: log.append("after"))

    async with worker(clock_app):
        first = (await clock_app.send("nap", {})).run_ids[0]
        await eventually(lambda: log == ["before"])
        await eventually(lambda: _status(clock_app, first, "waiting"))
        second = (await clock_app.send("nap", {})).run_ids[0]
        clock.advance(601)  # the first wakes within its hour: it resumes; the second waits
        assert (await clock_app.wait_for_run(first, timeout=10)).status == "completed"
        assert (await clock_app.get_run(second)).status == "queued"
        clock.advance(3000)
        await eventually(lambda: log.count("before") == 2)


async def _status(app: df.Dataflows, run_id: str, status: str) -> bool:
    return (await app.get_run(run_id)).status == status


async def test_a_run_cancelled_while_throttled_never_starts_and_frees_nothing(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    started: list[int] = []

    @clock_app.workflow("sync", trigger=df.on_event("order"), throttle=df.Throttle(1, "1m"))
    async def sync(event: df.Event, step: df.Step) -> None:
        started.append(event.data["n"])

    ids = []
    for n in range(3):
        ids.append((await clock_app.send("order", {"n": n})).run_ids[0])
        clock.advance(0.01)
    async with worker(clock_app):
        await eventually(lambda: started == [0])
        await clock_app.cancel(ids[1])
        clock.advance(61)
        await eventually(lambda: started == [0, 2])
        assert (await clock_app.get_run(ids[1])).status == "cancelled"
