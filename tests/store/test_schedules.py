"""Schedules in the store: synced from the code, moved on by compare-and-set, paused and resumed;
a tick's event stored once however many stores send it."""

from __future__ import annotations

import asyncio

from dataflows.records import EventIntake, NewEvent, NewRun, NewSchedule
from dataflows.store import Store

T0 = 1_700_000_000.0


def schedule(sid: str, expr: str = "0 * * * *", next_at: float = T0, **kw: str) -> NewSchedule:
    return NewSchedule(
        sid,
        kw.get("workflow_id", sid.split(":")[0]),
        expr,
        kw.get("tz", "UTC"),
        kw.get("catch_up", "latest"),
        next_at,
    )


async def test_sync_adds_changes_and_deletes(store: Store, other: Store) -> None:
    await store.sync_schedules([schedule("a:0"), schedule("b:0", next_at=T0 + 60)], T0 - 10)
    rows = await other.list_schedules()
    assert [(r.id, r.workflow_id, r.next_at, r.paused) for r in rows] == [
        ("a:0", "a", T0, False),
        ("b:0", "b", T0 + 60, False),
    ]
    assert await other.next_schedule_at() == T0
    assert [r.id for r in await other.due_schedules(T0)] == ["a:0"]
    assert [r.id for r in await other.due_schedules(T0 + 60)] == ["a:0", "b:0"]

    # Later code: a:0 unchanged (its next_at, which may be overdue, stays), b:0 gets a new
    # expression (next_at recomputed by the code), b:0's catch_up alone would keep it; c:0 is
    # new and the rest of the old code is gone.
    assert await other.pause_schedule("a:0", T0) is not None
    await other.sync_schedules(
        [
            schedule("a:0", next_at=T0 + 3600),
            schedule("b:0", "*/5 * * * *", next_at=T0 + 300, catch_up="all"),
        ],
        T0 + 1,
    )
    rows = await store.list_schedules()
    assert [(r.id, r.expr, r.catch_up, r.next_at, r.paused) for r in rows] == [
        ("a:0", "0 * * * *", "latest", T0, True),
        ("b:0", "*/5 * * * *", "all", T0 + 300, False),
    ]
    await store.sync_schedules([schedule("b:0", "*/5 * * * *", T0 + 999, catch_up="none")], T0)
    rows = await store.list_schedules()
    assert [(r.id, r.catch_up, r.next_at) for r in rows] == [("b:0", "none", T0 + 300)]
    await store.sync_schedules([], T0)
    assert await store.list_schedules() == []
    assert await store.next_schedule_at() is None


async def test_concurrent_syncs_of_different_code_do_not_deadlock(
    store: Store, other: Store
) -> None:
    old = [schedule(f"w{n}:0") for n in range(10)]
    new = [schedule(f"v{n}:0") for n in range(10)]
    for _ in range(5):
        await asyncio.gather(store.sync_schedules(old, T0), other.sync_schedules(new, T0))
        ids = {r.id for r in await store.list_schedules()}
        assert ids in ({s.id for s in old}, {s.id for s in new})


async def test_advance_is_a_compare_and_set(store: Store, other: Store) -> None:
    await store.sync_schedules([schedule("a:0")], T0)
    results = await asyncio.gather(
        store.advance_schedule("a:0", T0, T0 + 3600, T0),
        other.advance_schedule("a:0", T0, T0 + 3600, T0),
    )
    assert sorted(results) == [False, True]
    assert not await store.advance_schedule("a:0", T0, T0 + 7200, T0)
    row = await store.get_schedule("a:0")
    assert row is not None and row.next_at == T0 + 3600
    assert not await store.advance_schedule("nope:0", T0, T0 + 1, T0)


async def test_pause_and_resume(store: Store) -> None:
    await store.sync_schedules([schedule("a:0")], T0)
    paused = await store.pause_schedule("a:0", T0 + 1)
    assert paused is not None and paused.paused
    assert await store.due_schedules(T0 + 9999) == []
    assert await store.next_schedule_at() is None
    # Paused, it is not moved on by a worker that read it before.
    assert not await store.advance_schedule("a:0", T0, T0 + 3600, T0 + 1)
    resumed = await store.resume_schedule("a:0", T0 + 7200, T0 + 2)
    assert resumed is not None and not resumed.paused and resumed.next_at == T0 + 7200
    # Resuming again leaves next_at alone.
    again = await store.resume_schedule("a:0", T0 + 99999, T0 + 3)
    assert again is not None and again.next_at == T0 + 7200
    assert await store.pause_schedule("nope:0", T0) is None
    assert await store.resume_schedule("nope:0", T0, T0) is None
    assert await store.get_schedule("nope:0") is None


async def test_a_tick_sent_by_several_stores_starts_one_run(store: Store, other: Store) -> None:
    def tick(run_id: str) -> EventIntake:
        event = NewEvent("cron:a:0:2023-11-14T22:13:20Z", "dataflows/cron", "{}", T0)
        return EventIntake(event, (NewRun(run_id, "a", event),))

    sent = await asyncio.gather(
        store.send_events([tick("r1")], T0), other.send_events([tick("r2")], T0)
    )
    results = [s.results[0] for s in sent]
    assert sorted(r.duplicate for r in results) == [False, True]
    assert {r.run_ids for r in results} in ({("r1",)}, {("r2",)})
    assert len(await store.list_runs("a", None, 10)) == 1
