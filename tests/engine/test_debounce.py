"""Debounces through the app and a worker, on both stores: a burst of events with one key
starts one run, with the last event's data, a period after the last (at most max_wait after
the first)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import ManualClock, eventually, worker


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"debounce": df.Debounce("soon")}, "debounce period='soon'"),
        ({"debounce": df.Debounce(0)}, "debounce period=0"),
        ({"debounce": df.Debounce("30s", max_wait="never")}, "debounce max_wait='never'"),
        ({"debounce": df.Debounce("30s", key="item")}, "debounce key='item'"),
        ({"debounce": "30s"}, "debounce='30s'"),
    ],
)
def test_bad_debounces_fail_at_registration_naming_workflow_and_option(
    options: dict[str, Any], named: str
) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError) as caught:
        app.workflow("sync-item", **options)
    assert "'sync-item'" in str(caught.value) and named in str(caught.value)


def debounced(app: df.Dataflows, clock: ManualClock, max_wait: str | None = None) -> list[Any]:
    started: list[Any] = []

    @app.workflow(
        "sync-item",
        trigger=df.on_event("item/changed"),
        debounce=df.Debounce(period="30s", key="data.item_id", max_wait=max_wait),
    )
    async def sync_item(event: df.Event, step: df.Step) -> None:
        started.append((event.data["item_id"], event.data["n"], clock.now()))

    return started


async def test_a_burst_starts_one_run_with_the_last_event_a_period_after_it(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    started = debounced(clock_app, clock, max_wait="5m")
    async with worker(clock_app):
        first = await clock_app.send("item/changed", {"item_id": 1, "n": 0})
        assert len(first.run_ids) == 1 and first.skipped == ()
        (run_id,) = first.run_ids
        pending = await clock_app.get_run(run_id)
        assert (pending.status, pending.wait_reason) == ("waiting", "debounce sync-item/1")
        other = await clock_app.send("item/changed", {"item_id": 2, "n": 0})
        for n in range(1, 5):
            clock.advance(10)
            more = await clock_app.send("item/changed", {"item_id": 1, "n": n})
            assert more.run_ids == ()
            assert more.skipped == (("sync-item", f"debounced into run {run_id}"),)
        last = clock.now()
        await eventually(lambda: [s[0] for s in started] == [2])  # item 2 had no burst
        clock.advance(29)
        await asyncio.sleep(0.3)
        assert len(started) == 1
        clock.advance(1.5)
        run = await clock_app.wait_for_run(run_id, timeout=10)
        assert run.status == "completed"
        assert run.event.data == {"item_id": 1, "n": 4}
        assert (await clock_app.wait_for_run(other.run_ids[0], timeout=10)).status == "completed"
    assert [(i, n) for i, n, _ in started] == [(2, 0), (1, 4)]
    assert started[1][2] >= last + 30
    assert len(await clock_app.list_runs(workflow_id="sync-item")) == 2


async def test_a_run_starts_at_max_wait_however_long_the_burst(
    clock_app: df.Dataflows, clock: ManualClock
) -> None:
    started = debounced(clock_app, clock, max_wait="1m")
    async with worker(clock_app):
        begun = clock.now()
        (run_id,) = (await clock_app.send("item/changed", {"item_id": 1, "n": 0})).run_ids
        for n in range(1, 3):
            clock.advance(20)
            await clock_app.send("item/changed", {"item_id": 1, "n": n})
        clock.advance(19)  # 59s after the first event
        await asyncio.sleep(0.3)
        assert started == []
        clock.advance(1.5)
        await eventually(lambda: len(started) == 1)
        assert started[0][:2] == (1, 2) and started[0][2] - begun < 61
        assert (await clock_app.wait_for_run(run_id, timeout=10)).status == "completed"
        # The run started: the next event starts a new one.
        again = await clock_app.send("item/changed", {"item_id": 1, "n": 3})
        assert len(again.run_ids) == 1 and again.run_ids[0] != run_id
