"""Leases: a worker claims runnable runs, renews its leases, and gives runs back.

A claim bumps each run's ``lease_token``; every write a worker then makes for the run is
*fenced* by that token (the ``fence`` fragment of each dialect's ``queries.sql``): it takes
effect only while the run is still ``running`` under it, so a worker that lost its lease
(paused, partitioned, slow) writes nothing. Suspending a run or releasing it at shutdown gives
the lease back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dataflows.records import Lease
from dataflows.store.program import NOTIFY, Program, Query
from dataflows.store.rows import claimed_runs


def claim_runs(worker_id: str, limit: int, lease_seconds: float, now: float) -> Program:
    """Claim runs, recording their due sleeps as elapsed; each with its history."""
    rows = yield Query(
        "claim_runs",
        {"worker_id": worker_id, "limit": limit, "lease_until": now + lease_seconds, "now": now},
        "all",
    )
    return claimed_runs(rows)


def heartbeat(worker_id: str, run_ids: Sequence[str], lease_seconds: float, now: float) -> Program:
    """Extend this worker's leases on ``run_ids``; the ids renewed."""
    rows = yield Query(
        "heartbeat",
        {
            "worker_id": worker_id,
            "run_ids": json.dumps(list(run_ids)),
            "lease_until": now + lease_seconds,
        },
        "all",
    )
    return {row["id"] for row in rows}


def still_held(worker_id: str, run_ids: Sequence[str]) -> Program:
    """Which of ``run_ids`` are still running under ``worker_id``'s lease (a read)."""
    rows = yield Query(
        "still_held", {"worker_id": worker_id, "run_ids": json.dumps(list(run_ids))}, "all"
    )
    return {row["id"] for row in rows}


def holds_lease(lease: Lease) -> Program:
    """Whether the fence lets this holder write (after a write that changed nothing)."""
    held = yield Query("holds_lease", {"run_id": lease.run_id, "lease_token": lease.token}, "one")
    return held is not None


def suspend_run(lease: Lease, wake_at: float | None, reason: str, now: float) -> Program:
    """Give the run back as ``waiting`` until ``wake_at`` (``queued`` if an event matched)."""
    changed = yield Query(
        "suspend_run",
        {
            "run_id": lease.run_id,
            "lease_token": lease.token,
            "wake_at": wake_at,
            "reason": reason,
            "now": now,
        },
        "rowcount",
    )
    # One statement, so it commits on its own. No cross-process wake-up: only this process's
    # workers (woken by the store after it) need to see a run queued again or a new timer.
    return bool(changed)


def release_run(lease: Lease, now: float) -> Program:
    """Give a held run back as ``queued`` (graceful shutdown)."""
    changed = yield Query(
        "release_run", {"run_id": lease.run_id, "lease_token": lease.token, "now": now}, "rowcount"
    )
    if changed:
        yield NOTIFY
    return bool(changed)


def next_wake_at() -> Program:
    """The earliest ``wake_at`` of a waiting run: when a claim next finds one due."""
    row = yield Query("next_wake_at", {}, "one")
    return None if row is None else row["wake_at"]


# -- liveness (SQLite; PostgreSQL runs these queries on a connection of their own) ---------------


def register_worker(worker_id: str, now: float) -> Program:
    yield Query("register_worker", {"worker_id": worker_id, "now": now}, "one")


def unregister_worker(worker_id: str) -> Program:
    yield Query("unregister_worker", {"worker_id": worker_id})


def list_workers() -> Program:
    rows = yield Query("list_workers", {}, "all")
    return [(row["id"], row["registered_at"]) for row in rows]


def reap_worker(worker_id: str) -> Program:
    """A dead worker's record goes and its running runs' leases end now; their ids."""
    rows = yield Query("reap_workers", {"worker_id": worker_id}, "all")
    return [row["id"] for row in rows]
