"""Work written to a SQLite file by another store (another process, or another app on the same
file) wakes this store's workers within milliseconds, not at their next poll."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import dataflows as df
from dataflows.store.sqlite import SQLiteStore
from tests.engine.conftest import wait_status

POLL = 5.0  # far longer than any wake-up below may take
WITHIN = 0.3


def _app(path: Path, resumed: dict[str, float]) -> df.Dataflows:
    app = df.Dataflows(f"sqlite:///{path}", retention=None)

    @app.workflow("wait")
    async def wait(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go", "go", timeout=None)
        resumed["wait"] = time.time()

    @app.workflow("quick")
    async def quick(event: df.Event, step: df.Step) -> Any:
        resumed["quick"] = time.time()

    return app


async def test_an_event_sent_by_another_store_resumes_the_wait_at_once(tmp_path: Path) -> None:
    resumed: dict[str, float] = {}
    path = tmp_path / "wake.db"
    working, sending = _app(path, resumed), _app(path, {})
    try:
        async with working.worker(poll_interval=POLL):
            run_id = await working.start("wait")
            await wait_status(working, run_id, "waiting")
            await asyncio.sleep(0.1)  # past the claim the start woke
            sent_at = time.time()
            await sending.send("go", {})
            await working.wait_for_run(run_id, timeout=POLL)
            assert resumed["wait"] - sent_at < WITHIN
    finally:
        await working.close()
        await sending.close()


async def test_a_run_started_by_another_store_begins_at_once(tmp_path: Path) -> None:
    resumed: dict[str, float] = {}
    path = tmp_path / "start.db"
    working, starting = _app(path, resumed), _app(path, {})
    try:
        async with working.worker(poll_interval=POLL):
            await asyncio.sleep(0.2)  # past the worker's first claim
            started_at = time.time()
            run_id = await starting.start("quick")
            await working.wait_for_run(run_id, timeout=POLL)
            assert resumed["quick"] - started_at < WITHIN
    finally:
        await working.close()
        await starting.close()


async def test_the_watch_runs_only_while_a_worker_listens(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "idle.db"))
    await store.open()
    try:
        assert store._watch_handle is None
        woken: list[float] = []

        def listener() -> None:
            woken.append(time.time())

        store.add_listener(listener, worker_id="w")
        assert store._watch_handle is not None
        await asyncio.sleep(0.05)
        await store.ping()
        await store.list_workers()  # this store's own reads and commits wake nobody
        await store.register_worker("w", time.time())
        await asyncio.sleep(0.05)
        assert woken == []
        store.remove_listener(listener)
        assert store._watch_handle is None
    finally:
        await store.close()


async def test_a_listener_of_no_worker_starts_no_watch(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "client.db"))
    await store.open()
    try:
        store.add_listener(lambda: None)
        assert store._watch_handle is None
    finally:
        await store.close()
