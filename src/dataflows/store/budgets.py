"""Shared step budgets: a sliding log of grants per ``(budget, key)``, one row per unit taken.

A unit is taken in one transaction that first serialises the takers of the same ``(budget,
key)`` (PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``, a single
writer), then counts the grants still in their window and inserts one more only below the
limit: the limit holds however many workers ask. The grant is fenced by the run's lease and
dated by the engine's clock read once the lock is held.

A unit is held from its grant until the call it paid for returns, and for ``period`` after
that (:func:`return_budget_unit`): the call reaches the API somewhere in between, so however
long the way from the grant to the API took, no ``period`` at the API sees more than ``limit``
calls. Until the call returns, the grant's window ends ``2 * period`` after it (the worker may
have died during the call). Each grant also deletes a bounded number of expired grants, of any
budget, so the table stays about as small as the budgets' windows.

In one process, the takers of one budget and key also queue behind each other, and a denial is
remembered until the time it named (:class:`Gates`): no unit can free up before it (a grant's
window only ends later than foreseen, when its call returns late), so the runs that a timer
wakes together ask the database once per process, not once each, and the first in line gets
the unit sooner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dataflows.records import Lease, UnitAnswer, UnitRequest
from dataflows.store.program import Program, Query

#: Expired grants deleted by each grant at most.
PURGE_BATCH = 100
#: Remembered denials a process keeps before it drops those that have passed.
MAX_GATES = 1000


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
    rows = yield Query(
        "budget_window",
        {"budget": request.budget, "key": request.key, "now": now, "limit": request.limit},
        "all",
    )
    if len(rows) >= request.limit:
        return UnitAnswer("denied", free_at(rows, request.period, now))
    row = yield Query(
        "insert_budget_grant",
        {
            "budget": request.budget,
            "key": request.key,
            "run_id": lease.run_id,
            "step_key": request.step_key,
            "granted_at": now,
            "expires_at": now + 2 * request.period,
        },
        "one",
    )
    # Only a grant purges: a denial, which many waiting runs may ask for at once, stays short.
    yield Query("purge_budget_grants", {"now": now, "batch": PURGE_BATCH})
    return UnitAnswer("granted", grant_id=int(row["id"]))


def free_at(rows: list[dict[str, float]], period: float, now: float) -> float:
    """When the latest ``limit`` grants (``rows``) first leave room for one more: the earliest
    of their ends. A call still in flight ends ``period`` after it returns; until it does, it is
    taken to end ``period`` after its grant, or, past that, looked at again soon (a twentieth of
    the period), never later than its ``2 * period`` bound."""
    ends = []
    for row in rows:
        end = row["expires_at"]
        if row["returned_at"] is None:
            guess = row["granted_at"] + period
            end = min(end, guess if guess > now else now + period / 20)
        ends.append(end)
    return float(min(ends))


def return_budget_unit(grant_id: int, period: float, now: float) -> Program:
    """The call paid for by grant ``grant_id`` returned at ``now``: the unit frees at
    ``now + period``."""
    yield Query(
        "return_budget_unit", {"id": grant_id, "now": now, "expires_at": now + period}, "rowcount"
    )


def rate_limited_waits() -> Program:
    rows = yield Query("rate_limited_waits", {}, "all")
    return [(row["wait_reason"], int(row["count"])) for row in rows]


@dataclass(slots=True)
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: No unit before this time (from the last denial), or ``None``.
    closed_until: float | None = None
    takers: int = 0


class Gates:
    """This process's takers of each ``(budget, key, limit, period)``, one at a time, and the
    last denial each got (see the module's docstring)."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, str, int, float], _Gate] = {}

    async def take(
        self,
        request: UnitRequest,
        clock: Callable[[], float],
        ask: Callable[[], Awaitable[UnitAnswer]],
    ) -> UnitAnswer:
        """A remembered denial while it holds, else ``ask()`` (the database)."""
        name = (request.budget, request.key, request.limit, request.period)
        if len(self._gates) >= MAX_GATES:
            self._forget_open_gates(clock())
        gate = self._gates.setdefault(name, _Gate())
        gate.takers += 1
        try:
            async with gate.lock:
                if gate.closed_until is not None and clock() < gate.closed_until:
                    return UnitAnswer("denied", gate.closed_until)
                answer = await ask()
                gate.closed_until = answer.wake_at if answer.state == "denied" else None
                return answer
        finally:
            gate.takers -= 1
            if gate.takers == 0 and gate.closed_until is None:
                del self._gates[name]

    def _forget_open_gates(self, now: float) -> None:
        """Drop the idle gates whose denial has passed (keys nobody asked for since)."""
        for name, gate in list(self._gates.items()):
            if gate.takers == 0 and (gate.closed_until is None or gate.closed_until <= now):
                del self._gates[name]
