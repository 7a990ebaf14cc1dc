"""Engine fixtures: a fresh app per test on each store, with the real clock or a ManualClock.

Every test that takes ``app``, ``clock_app`` or ``make_app`` runs once on SQLite and once on
PostgreSQL (the ``db`` fixture). ``worker(app)`` runs a fast-polling worker in the test's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import dataflows as df
from dataflows.worker import Worker
from tests.pg import DbTarget

MakeApp = Callable[..., df.Dataflows]


class ManualClock(df.ManualClock):
    """``df.ManualClock`` that counts in-memory sleepers, so a test can move time only once the
    worker is actually sleeping (moving it earlier would just push the sleeper's deadline)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleepers = 0

    async def sleep(self, seconds: float) -> None:
        self.sleepers += 1
        try:
            await super().sleep(seconds)
        finally:
            self.sleepers -= 1


@pytest.fixture
async def make_app(db: DbTarget) -> AsyncIterator[MakeApp]:
    """``make_app(**options)``: a ``df.Dataflows`` on this test's store, closed after the test."""
    apps: list[df.Dataflows] = []

    def make(**options: Any) -> df.Dataflows:
        app = df.Dataflows(db.url, schema=db.schema or "dataflows", **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.close()


@pytest.fixture
def app(make_app: MakeApp) -> df.Dataflows:
    """An app on this test's store, with the real clock."""
    return make_app()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clock_app(make_app: MakeApp, clock: ManualClock) -> df.Dataflows:
    """An app on this test's store whose time only moves with ``clock.advance`` (which wakes
    its workers)."""
    return make_app(clock=clock)


def worker(
    app: df.Dataflows,
    *,
    concurrency: int = 4,
    poll_interval: float = 0.02,
    lease_seconds: float = 30.0,
    **options: Any,
) -> AbstractAsyncContextManager[Worker]:
    """``async with worker(app):`` runs a fast-polling worker in the test's event loop."""
    return app.worker(
        concurrency=concurrency,
        poll_interval=poll_interval,
        lease_seconds=lease_seconds,
        **options,
    )


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def step_named(run: df.Run, key: str) -> df.StepInfo:
    """The step recorded under ``key`` in ``run`` (fails the test if there is none)."""
    found = [s for s in run.steps if s.key == key]
    assert found, f"no step {key!r} in {[s.key for s in run.steps]}"
    return found[0]


async def wait_status(app: df.Dataflows, run_id: str, status: str, timeout: float = 10.0) -> df.Run:
    """Poll until the run has ``status`` (e.g. ``waiting``: suspended in the store); return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (run := await app.get_run(run_id)).status != status:
        if loop.time() > deadline:
            pytest.fail(f"run {run_id} stayed {run.status!r}, expected {status!r}")
        await asyncio.sleep(0.005)
    return run
