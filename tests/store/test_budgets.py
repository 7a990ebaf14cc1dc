"""Shared step budgets in the store: a sliding log per (budget, key), exact at the window's edges,
fenced by the lease, serialised between stores, and purged as grants expire."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import psycopg

from dataflows.records import ClaimedRun, Lease, UnitAnswer, UnitRequest
from dataflows.store import Store
from dataflows.store.budgets import PURGE_BATCH
from dataflows.store.sqlite import sqlite_path
from tests.pg import DbTarget
from tests.store.builders import T0, running


def ask(budget: str = "api", key: str = "", limit: int = 2, period: float = 10.0) -> UnitRequest:
    return UnitRequest(budget, key, limit, period, "call")


def at(now: float) -> Callable[[], float]:
    """A clock stopped at ``now``."""
    return lambda: now


def lease(run: ClaimedRun) -> Lease:
    return Lease(run.id, run.lease_token)


async def test_a_unit_per_grant_until_the_limit_then_the_wake_time(store: Store) -> None:
    [run] = await running(store, "r1")

    async def take(now: float) -> UnitAnswer:
        return await store.take_budget_unit(lease(run), ask(), at(now))

    assert await take(T0) == UnitAnswer("granted")
    assert await take(T0 + 4) == UnitAnswer("granted")
    # Full: the first unit frees when the earliest grant leaves the window (T0 + 10).
    assert await take(T0 + 5) == UnitAnswer("denied", T0 + 10)
    assert await take(T0 + 9.999) == UnitAnswer("denied", T0 + 10)
    assert await take(T0 + 10) == UnitAnswer("granted")  # (T0, T0 + 10]: one grant left in it
    assert await take(T0 + 10) == UnitAnswer("denied", T0 + 14)
    assert await take(T0 + 14) == UnitAnswer("granted")


async def test_keys_and_budgets_are_separate(store: Store) -> None:
    [run] = await running(store, "r1")
    for budget, key in [("api", ""), ("api", "a"), ("api", "b"), ("other", "a")]:
        answer = await store.take_budget_unit(lease(run), ask(budget, key, limit=1), at(T0))
        assert answer == UnitAnswer("granted"), (budget, key)
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
    assert await store.take_budget_unit(lease(run), ask(limit=1), at(T0)) == UnitAnswer("granted")


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
    assert {a.wake_at for a in answers if a.state == "denied"} == {T0 + 10}


async def test_expired_grants_are_purged_a_batch_at_a_time(store: Store, db: DbTarget) -> None:
    [run] = await running(store, "r1")
    total = PURGE_BATCH + 20
    for n in range(total):
        answer = await store.take_budget_unit(lease(run), ask(f"b{n}", limit=1, period=1.0), at(T0))
        assert answer.state == "granted"
    later = T0 + 5  # every grant above has expired
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
