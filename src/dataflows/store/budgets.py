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

A run denied a unit takes a place in the budget's line (``budget_waits``): it is told to ask
again when the unit meant for it frees up, the first unit to free for the first run in line,
the next for the next, so waiting runs wake one after another, each when its unit is due,
instead of all at once (where all but one would be claimed, replayed and suspended again for
nothing). In one process, the takers of one budget and key also queue behind each other
(:class:`Gates`) rather than each holding a connection while waiting for the database's lock.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dataflows.records import Lease, UnitAnswer, UnitRequest
from dataflows.store.batching import Batcher
from dataflows.store.program import Program, Query

#: Expired grants deleted by each grant at most.
PURGE_BATCH = 100
#: Takers of one budget a process asks for in one transaction at most.
BATCH = 100
#: How long a place in line is kept after its time (a run asking later than this, as one taken
#: over from a dead worker may, joins the line anew): at least this, or two periods.
LINE_KEPT = 60.0


def take_budget_units(
    takers: Sequence[tuple[Lease, UnitRequest]], clock: Callable[[], float]
) -> Program:
    """A unit each for ``takers``, in order, all of one ``(budget, key, limit, period)``, in one
    transaction: the units left in the window go to the first of them, the rest join the line.
    Answers in the order of ``takers``."""
    request = takers[0][1]
    where = {"budget": request.budget, "key": request.key}
    leases = [{"run_id": lease.run_id, "lease_token": lease.token} for lease, _ in takers]
    held_rows = yield Query("lock_budget", where | {"takers": json.dumps(leases)}, "all")
    held = {row["id"] for row in held_rows}
    # Read once the takers are serialised: a grant is never dated before a taker that waited
    # for the lock (and so called later) could see it, which would let its window end early.
    now = clock()
    rows = yield Query("budget_window", where | {"now": now, "limit": request.limit}, "all")
    asking = [(lease, ask) for lease, ask in takers if lease.run_id in held]
    left = max(request.limit - len(rows), 0)
    granted, denied = asking[:left], asking[left:]
    grant_ids: dict[tuple[str, str], int] = {}
    if granted:
        grants = [{"run_id": lease.run_id, "step_key": ask.step_key} for lease, ask in granted]
        inserted = yield Query(
            "insert_budget_grants",
            where
            | {"grants": json.dumps(grants), "now": now, "expires_at": now + 2 * request.period},
            "all",
        )
        grant_ids = {(row["run_id"], row["step_key"]): int(row["id"]) for row in inserted}
        # A grant purges expired grants, a denial past places in line: each table is kept
        # small by the statements that add to it.
        yield Query("purge_budget_grants", {"now": now, "batch": PURGE_BATCH})
    wakes: dict[tuple[str, str], float] = {}
    if denied:
        window = rows + [
            {"granted_at": now, "returned_at": None, "expires_at": now + 2 * request.period}
        ] * len(granted)
        wakes = yield from _join_line(
            request, [(lease.run_id, ask.step_key) for lease, ask in denied], window, now
        )
    answers = []
    for lease, ask in takers:
        taker = (lease.run_id, ask.step_key)
        if lease.run_id not in held:
            answers.append(UnitAnswer("fenced"))
        elif taker in grant_ids:
            answers.append(UnitAnswer("granted", grant_id=grant_ids[taker]))
        else:
            answers.append(UnitAnswer("denied", wakes[taker]))
    return answers


def _join_line(
    request: UnitRequest, takers: list[tuple[str, str]], rows: list[dict[str, Any]], now: float
) -> Program:
    """The times denied takers (``(run_id, step_key)``, in order) should ask again, recorded as
    their places in the budget's line.

    A taker new to the line comes after the runs promised a time still ahead: the ``n``-th of
    them (from 0) gets the ``n``-th unit to free up, counting each unit again a ``period`` later
    for every round of ``limit``. A taker already in line is asking at its time and its unit has
    not freed yet (the call before it returned late): it keeps its place, the earliest end."""
    where = {"budget": request.budget, "key": request.key}
    run_ids = json.dumps(sorted({run_id for run_id, _ in takers}))
    line = yield Query("budget_line", where | {"now": now, "run_ids": run_ids}, "one")
    in_line = {tuple(pair) for pair in _json(line["in_line"])}
    ahead = int(line["ahead"])
    ends = unit_ends(rows, request.period, now)
    wakes: dict[tuple[str, str], float] = {}
    for taker in takers:
        if taker in in_line:
            wakes[taker] = ends[0]
        else:
            rounds, place = divmod(ahead, len(ends))
            wakes[taker] = ends[place] + rounds * request.period
            ahead += 1
    waits = [
        {"run_id": run_id, "step_key": step_key, "wake_at": wake_at}
        for (run_id, step_key), wake_at in wakes.items()
    ]
    yield Query("join_budget_line", where | {"waits": json.dumps(waits)})
    before = now - max(LINE_KEPT, 2 * request.period)
    yield Query("purge_budget_waits", {"before": before, "batch": PURGE_BATCH})
    return wakes


def _json(value: Any) -> Any:
    """A JSON column: decoded by PostgreSQL's driver, text from SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def unit_ends(rows: list[dict[str, Any]], period: float, now: float) -> list[float]:
    """When each of the latest ``limit`` grants (``rows``) leaves room for one more, earliest
    first. A call still in flight ends ``period`` after it returns; until it does, it is taken
    to end ``period`` after its grant, or, past that, looked at again soon (a hundredth of the
    period, at least 5 ms), never later than its ``2 * period`` bound."""
    ends = []
    for row in rows:
        end = row["expires_at"]
        if row["returned_at"] is None:
            guess = row["granted_at"] + period
            end = min(end, guess if guess > now else now + max(period / 100, 0.005))
        ends.append(end)
    return sorted(ends)


def return_budget_unit(grant_id: int, period: float, now: float) -> Program:
    """The call paid for by grant ``grant_id`` returned at ``now``: the unit frees at
    ``now + period``."""
    yield Query(
        "return_budget_unit", {"id": grant_id, "now": now, "expires_at": now + period}, "rowcount"
    )


def rate_limited_waits() -> Program:
    rows = yield Query("rate_limited_waits", {}, "all")
    return [(row["wait_reason"], int(row["count"])) for row in rows]


Taker = tuple[Lease, UnitRequest]


class Gates:
    """This process's takers of each ``(budget, key, limit, period)``: those that come while a
    transaction asks for others go together in the next one (group commit, as for step
    writes), answered in the order they came (see the module's docstring)."""

    def __init__(self, most: int = BATCH) -> None:
        self.most = most
        self._batchers: dict[tuple[str, str, int, float], Batcher[Taker, UnitAnswer]] = {}

    async def take(
        self,
        lease: Lease,
        request: UnitRequest,
        ask: Callable[[Sequence[Taker]], Awaitable[Sequence[UnitAnswer]]],
    ) -> UnitAnswer:
        """This taker's answer from ``ask`` (the database), asked with the takers queued with it."""
        name = (request.budget, request.key, request.limit, request.period)
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = self._batchers[name] = Batcher(ask, self.most)
        try:
            return await batcher.submit((lease, request))
        finally:
            if batcher.idle and self._batchers.get(name) is batcher:
                del self._batchers[name]
