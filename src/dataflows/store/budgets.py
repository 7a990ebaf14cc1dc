"""Shared step budgets: a sliding log of grants per ``(budget, key)``, one row per unit taken.

A unit is taken in one transaction that first serialises the takers of the same ``(budget,
key)`` (PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``, a single
writer), then counts the grants whose ``expires_at`` (``granted_at + period``) is still ahead
and inserts one more only below the limit: the limit holds however many workers ask. The grant
is fenced by the run's lease, and dated by the engine's clock read once the lock is held. Each call also deletes a bounded number of expired grants, of any
budget, so the table stays about as small as the budgets' windows.
"""

from __future__ import annotations

from collections.abc import Callable

from dataflows.records import Lease, UnitAnswer, UnitRequest
from dataflows.store.program import Program, Query

#: Expired grants deleted by each call at most.
PURGE_BATCH = 100


def take_budget_unit(lease: Lease, request: UnitRequest, clock: Callable[[], float]) -> Program:
    held = yield Query(
        "lock_budget",
        {
            "run_id": lease.run_id,
            "lease_token": lease.token,
            "budget": request.budget,
            "key": request.key,
        },
        "one",
    )
    if held is None:
        return UnitAnswer("fenced")
    # Read once the takers are serialised: a grant is never dated before a taker that waited
    # for the lock (and so called later) could see it, which would let its window end early.
    now = clock()
    yield Query("purge_budget_grants", {"now": now, "batch": PURGE_BATCH})
    rows = yield Query(
        "budget_window",
        {"budget": request.budget, "key": request.key, "now": now, "limit": request.limit},
        "all",
    )
    if len(rows) >= request.limit:
        # The latest `limit` grants, latest first: a unit frees when the earliest of them expires.
        return UnitAnswer("denied", float(rows[-1]["expires_at"]))
    yield Query(
        "insert_budget_grant",
        {
            "budget": request.budget,
            "key": request.key,
            "run_id": lease.run_id,
            "step_key": request.step_key,
            "granted_at": now,
            "expires_at": now + request.period,
        },
    )
    return UnitAnswer("granted")
