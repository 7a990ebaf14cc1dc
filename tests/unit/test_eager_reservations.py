"""A worker's slots for eager dispatch: reserved while an intake call may claim into them."""

from __future__ import annotations

from pathlib import Path

import pytest

import dataflows as df
from dataflows.errors import StoreError
from dataflows.records import EventIntake, NewEvent
from dataflows.worker import Worker, WorkerOptions


def make_worker(tmp_path: Path, concurrency: int) -> Worker:
    app = df.Dataflows(f"sqlite:///{tmp_path / 'eager.db'}")
    return Worker(app, WorkerOptions(concurrency=concurrency))


async def test_reserved_slots_are_not_claimed_twice_and_come_back(tmp_path: Path) -> None:
    worker = make_worker(tmp_path, concurrency=3)
    assert worker.reserve() == 3
    assert worker.reserve() == 0  # all held by the first call
    worker.deliver([], 3)  # that call claimed nothing
    assert worker.reserve() == 3
    worker.deliver([], 3)


async def test_a_claim_loop_that_stood_back_is_woken_when_slots_come_back(
    tmp_path: Path,
) -> None:
    worker = make_worker(tmp_path, concurrency=2)
    assert worker.reserve() == 2
    worker._deferred = True  # as the claim loop marks it, finding every free slot reserved
    worker._wake.clear()
    worker.deliver([], 2)
    assert worker._wake.is_set()
    assert not worker._deferred

    assert worker.reserve() == 2
    worker._wake.clear()
    worker.deliver([], 2)
    assert not worker._wake.is_set()  # nobody stood back: the claim loop is not woken for it


async def test_a_stopping_worker_reserves_nothing(tmp_path: Path) -> None:
    worker = make_worker(tmp_path, concurrency=2)
    worker.request_stop()
    assert worker.reserve() == 0


async def test_a_failed_send_gives_the_reserved_slots_back(tmp_path: Path) -> None:
    worker = make_worker(tmp_path, concurrency=2)  # its store is not open: the send fails
    intake = EventIntake(NewEvent("e1", "ping", "{}", 0.0))
    with pytest.raises(StoreError):
        await worker.send_events([intake], 0.0)
    assert worker.reserve() == 2
