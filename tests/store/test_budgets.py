"""Shared step budgets in the store: a sliding log per (budget, key), exact at the window's edges,
fenced by the lease, serialised between stores, and purged as grants expire."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence

import psycopg

from dataflows.records import ClaimedRun, Lease, UnitAnswer, UnitRequest
from dataflows.store import Store
from dataflows.store.budgets import PURGE_BATCH, Gates
from dataflows.store.sqlite import sqlite_path
from tests.pg import DbTarget
from tests.store.builders import T0, running


def ask(budget: str = "api", key: str = "", limit: int = 2, period: float = 10.0) -> UnitRequest:
    return UnitRequest(budget, key, limit, period, "call")


def ask_unit() -> UnitRequest:
    return ask(limit=1)


def at(now: float) -> Callable[[], float]:
    """A clock stopped at ``now``."""
    return lambda: now


def lease(run: ClaimedRun) -> Lease:
    return Lease(run.id, run.lease_token)


async def test_a_unit_per_grant_until_the_limit_then_the_wake_time(store: Store) -> None:
    [run] = await running(store, "r1")

    async def take(now: float) -> UnitAnswer:
        return await store.take_budget_unit(lease(run), ask(), at(now))

    async def call(now: float, returned: float | None = None) -> None:
        """Take a unit at ``now`` and return it at ``returned`` (default: at once)."""
        answer = await take(now)
        assert answer.state == "granted" and answer.grant_id is not None
        await store.return_budget_unit(answer.grant_id, 10.0, now if returned is None else returned)

    await call(T0)
    await call(T0 + 4)
    # Full: the first unit frees when the earliest call's window (from its return) ends.
    assert await take(T0 + 5) == UnitAnswer("denied", T0 + 10)
    assert await take(T0 + 9.999) == UnitAnswer("denied", T0 + 10)
    await call(T0 + 10, returned=T0 + 10.5)  # (T0, T0 + 10]: one call left in it
    assert await take(T0 + 10) == UnitAnswer("denied", T0 + 14)
    await call(T0 + 14)
    assert await take(T0 + 15) == UnitAnswer("denied", T0 + 20.5)


async def test_a_call_in_flight_holds_its_unit_until_it_returns(store: Store) -> None:
    [run] = await running(store, "r1")

    async def take(now: float) -> UnitAnswer:
        return await store.take_budget_unit(lease(run), ask(limit=1), at(now))

    first = await take(T0)
    assert first.state == "granted" and first.grant_id is not None
    # Not returned yet: expected back a period after the grant, then looked at again often (a
    # hundredth of the period).
    assert await take(T0 + 5) == UnitAnswer("denied", T0 + 10)
    assert await take(T0 + 10) == UnitAnswer("denied", T0 + 10.1)
    # It returned at T0 + 12: its window runs to T0 + 22.
    await store.return_budget_unit(first.grant_id, 10.0, T0 + 12)
    assert await take(T0 + 12) == UnitAnswer("denied", T0 + 22)
    second = await take(T0 + 22)
    assert second.state == "granted"
    # A call that never returns (its worker died) holds its unit for two periods.
    assert await take(T0 + 23) == UnitAnswer("denied", T0 + 32)
    assert (await take(T0 + 42)).state == "granted"


async def test_keys_and_budgets_are_separate(store: Store) -> None:
    [run] = await running(store, "r1")
    for budget, key in [("api", ""), ("api", "a"), ("api", "b"), ("other", "a")]:
        answer = await store.take_budget_unit(lease(run), ask(budget, key, limit=1), at(T0))
        assert answer.state == "granted", (budget, key)
    assert (await store.take_budget_unit(lease(run), ask("api", "a", limit=1), at(T0))).state == (
        "denied"
    )


async def test_a_lower_limit_waits_for_enough_grants_to_leave(store: Store) -> None:
    [run] = await running(store, "r1")
    for n in range(4):
        assert (
            await store.take_budget_unit(lease(run), ask(limit=4), at(T0 + n))
        ).state == "granted"
    # Redeployed with limit 2: a unit frees when only one grant is left in the window.
    assert await store.take_budget_unit(lease(run), ask(limit=2), at(T0 + 5)) == UnitAnswer(
        "denied", T0 + 12
    )


async def test_a_run_no_longer_held_takes_nothing(store: Store) -> None:
    [run] = await running(store, "r1")
    stale = Lease(run.id, run.lease_token - 1)
    assert await store.take_budget_unit(stale, ask(limit=1), at(T0)) == UnitAnswer("fenced")
    assert (await store.take_budget_unit(lease(run), ask(limit=1), at(T0))).state == "granted"


async def test_takers_asking_together_are_answered_each_in_order(store: Store) -> None:
    """Takers of one process that ask at once share a transaction: a stale one takes nothing,
    the units left go to the first of the others, the rest join the line."""
    r1, r2, r3 = await running(store, "r1", "r2", "r3")
    stale = Lease(r1.id, r1.lease_token - 1)
    answers = await asyncio.gather(
        *(
            store.take_budget_unit(x, ask(limit=1), at(T0))
            for x in (stale, lease(r2), lease(r3), lease(r1))
        )
    )
    assert [a.state for a in answers] == ["fenced", "granted", "denied", "denied"]
    assert [a.wake_at for a in answers[2:]] == [T0 + 10, T0 + 20]


async def test_concurrent_takers_on_two_stores_get_exactly_the_limit(
    store: Store, other: Store
) -> None:
    runs = await running(store, *(f"r{n}" for n in range(12)))
    answers = await asyncio.gather(
        *(
            (store if n % 2 else other).take_budget_unit(lease(run), ask(limit=5), at(T0))
            for n, run in enumerate(runs)
        )
    )
    assert sorted(a.state for a in answers) == ["denied"] * 7 + ["granted"] * 5
    # Each denied run has its place in line: five units free at T0 + 10, then again a period on.
    wakes = sorted(a.wake_at or 0.0 for a in answers if a.state == "denied")
    assert wakes == [T0 + 10] * 5 + [T0 + 20] * 2


async def test_expired_grants_are_purged_a_batch_at_a_time(store: Store, db: DbTarget) -> None:
    [run] = await running(store, "r1")
    total = PURGE_BATCH + 20
    for n in range(total):
        answer = await store.take_budget_unit(lease(run), ask(f"b{n}", limit=1, period=1.0), at(T0))
        assert answer.state == "granted"
    later = T0 + 5  # every grant above has expired (never returned: two periods)
    assert (await store.take_budget_unit(lease(run), ask(limit=1), at(later))).state == "granted"
    assert grant_count(db) == total - PURGE_BATCH + 1
    assert (
        await store.take_budget_unit(lease(run), ask("x", limit=1), at(later))
    ).state == "granted"
    assert grant_count(db) == 2


def grant_count(db: DbTarget) -> int:
    """Rows in the grant log, read with a connection of the test's own."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(db.url))
        try:
            return int(conn.execute("SELECT count(*) FROM budget_grants").fetchone()[0])
        finally:
            conn.close()
    with psycopg.connect(db.url, autocommit=True, options=f"-c search_path={db.schema}") as pg:
        row = pg.execute("SELECT count(*) FROM budget_grants").fetchone()
        assert row is not None
        return int(row[0])


async def test_a_processs_takers_that_come_meanwhile_ask_together_in_order() -> None:
    gates = Gates()
    batches: list[list[str]] = []
    asking = 0

    async def from_database(takers: Sequence[tuple[Lease, UnitRequest]]) -> list[UnitAnswer]:
        nonlocal asking
        asking += 1
        assert asking == 1  # one transaction at a time
        batches.append([lease.run_id for lease, _ in takers])
        await asyncio.sleep(0.01)  # the others queue meanwhile
        asking -= 1
        return [UnitAnswer("denied", T0 + int(lease.run_id[1:])) for lease, _ in takers]

    leases = [Lease(f"r{n}", 1) for n in range(6)]
    answers = await asyncio.gather(*(gates.take(x, ask_unit(), from_database) for x in leases))
    assert batches == [["r0"], ["r1", "r2", "r3", "r4", "r5"]]
    assert [a.wake_at for a in answers] == [T0 + n for n in range(6)]
    # Other budgets (or keys) are asked for on their own.
    other = UnitRequest("other", "", 1, 10.0, "call")
    assert (await gates.take(leases[0], other, from_database)).wake_at == T0
    assert batches[-1] == ["r0"]


async def test_runs_denied_a_unit_wait_in_line_one_unit_each(store: Store) -> None:
    """Runs new to the line get the units as they free, one each, a period later for every
    round of ``limit``; a run asking at its time before its unit freed keeps its place."""
    r1, r2, *waiting = await running(store, *(f"r{n}" for n in range(1, 8)))

    async def take(run: ClaimedRun, now: float) -> UnitAnswer:
        return await store.take_budget_unit(lease(run), ask(limit=2, period=10.0), at(now))

    for run, now in ((r1, T0), (r2, T0 + 2)):
        granted = await take(run, now)
        assert granted.grant_id is not None
        await store.return_budget_unit(granted.grant_id, 10.0, now + 1)  # ends T0+11, T0+13
    r3, r4, r5, r6, r7 = waiting
    assert [(await take(run, T0 + 3)).wake_at for run in (r3, r4, r5, r6)] == [
        T0 + 11,
        T0 + 13,
        T0 + 21,
        T0 + 23,
    ]
    # r3 asks a little early: its unit is not free yet, it keeps the first place.
    assert await take(r3, T0 + 10.9) == UnitAnswer("denied", T0 + 11)
    assert (await take(r3, T0 + 11)).state == "granted"  # in flight: expected back at T0+21
    # r7 joins after r4, r5 and r6 (their times are still ahead): the unit r5's frees next.
    assert await take(r7, T0 + 12) == UnitAnswer("denied", T0 + 31)
    assert (await take(r4, T0 + 13)).state == "granted"
