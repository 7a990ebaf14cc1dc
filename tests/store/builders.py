"""Builders the store tests share: events, runs and steps, and a run claimed and waiting.

Times are handed in by the test (the engine's clock does it in production), so every deadline
and lease expiry is exact.
"""

from __future__ import annotations

import json
from typing import Any

from dataflows.records import (
    ClaimedRun,
    EventIntake,
    Lease,
    NewEvent,
    NewRun,
    NewStep,
    NewWait,
    WaitMatch,
)
from dataflows.store import Store

T0 = 1_000.0
LEASE = 30.0


def event(
    event_id: str, name: str = "order/created", data: dict[str, Any] | None = None, ts: float = T0
) -> NewEvent:
    return NewEvent(event_id, name, json.dumps(data or {}), ts)


def new_run(run_id: str, workflow_id: str = "wf", **kwargs: Any) -> NewRun:
    return NewRun(run_id, workflow_id, event(f"{run_id}/trigger"), **kwargs)


def step(
    key: str,
    output: Any = 1,
    *,
    status: str = "completed",
    kind: str = "run",
    started_at: float = T0,
    sends: tuple[EventIntake, ...] = (),
) -> NewStep:
    output_json = json.dumps(output) if status == "completed" else None
    error_json = json.dumps({"type": "Boom"}) if status == "failed" else None
    return NewStep(key, kind, status, output_json, error_json, 1, started_at, sends=sends)  # type: ignore[arg-type]


async def send(store: Store, event_id: str, name: str, data: dict[str, Any], now: float) -> None:
    await store.send_events([EventIntake(event(event_id, name, data, ts=now))], now)


async def running(store: Store, *run_ids: str, now: float = T0) -> list[ClaimedRun]:
    """Start these runs and claim them (they must be the only runnable ones)."""
    for run_id in run_ids:
        await store.start_run(new_run(run_id), now)
    claimed = await store.claim_runs("w1", len(run_ids), LEASE, now)
    assert sorted(c.id for c in claimed) == sorted(run_ids)
    return sorted(claimed, key=lambda c: run_ids.index(c.id))


async def wait_for(
    store: Store,
    run: ClaimedRun,
    key: str,
    match: WaitMatch,
    now: float,
    wake_at: float | None = None,
) -> Any:
    return await store.begin_wait(
        Lease(run.id, run.lease_token),
        NewWait(key, "wait", wake_at, match, run.created_at, run.event.id),
        now,
    )


async def status(store: Store, run_id: str) -> str:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


async def suspended(store: Store, run: ClaimedRun, key: str, match: WaitMatch, now: float) -> None:
    """The engine's order: reach the wait (pending), then suspend the run on it."""
    outcome = await wait_for(store, run, key, match, now, wake_at=T0 + 500)
    assert outcome.state == "pending"
    assert await store.suspend_run(Lease(run.id, run.lease_token), outcome.wake_at, "event", now)
    row = await store.get_run(run.id)
    assert row is not None and row.status == "waiting"
