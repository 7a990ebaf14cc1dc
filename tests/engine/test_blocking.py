"""app.blocking: the client calls from synchronous code, and its clean shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import dataflows as df
from tests.pg import DbTarget

#: The blocking client has its own store connection; on SQLite its writes do not notify this
#: process's worker (only PostgreSQL's NOTIFY crosses connections), so the worker polls quickly.
POLL = 0.05


def register(app: df.Dataflows) -> None:
    @app.workflow("greet", trigger=df.on_event("greet/requested"))
    async def greet(event: df.Event, step: df.Step) -> Any:
        if event.data.get("fail"):
            raise RuntimeError("asked to fail")
        if event.data.get("wait"):
            await step.wait_for_event("go", "go", match="data.name", timeout=None)
        return await step.run("greet", lambda: f"hello {event.data['name']}")


def exercise(client: Any) -> None:
    """Every blocking call, from a thread that has no event loop."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()

    run_id = client.start("greet", {"name": "ada"})
    assert isinstance(run_id, str)
    run = client.wait_for_run(run_id, timeout=10)
    assert (run.status, run.result) == ("completed", "hello ada")
    assert client.get_run(run_id).result == "hello ada"
    assert client.start("greet", {"name": "x"}, idempotency_key="k") == client.start(
        "greet", {"name": "y"}, idempotency_key="k"
    )

    sent = client.send("greet/requested", {"name": "bob"}, id="req-1")
    assert isinstance(sent, df.SendResult) and len(sent.run_ids) == 1
    assert client.send("greet/requested", {"name": "bob"}, id="req-1").duplicate
    assert client.wait_for_run(sent.run_ids[0], timeout=10).result == "hello bob"

    waiting = client.start("greet", {"name": "cy", "wait": True})
    client.send("go", {"name": "cy"})
    assert client.wait_for_run(waiting, timeout=10).result == "hello cy"

    parked = client.start("greet", {"name": "dee", "wait": True})
    assert client.cancel(parked) == "cancelled"
    assert client.get_run(parked).status == "cancelled"

    failed = client.start("greet", {"name": "eve", "fail": True})
    assert client.wait_for_run(failed, timeout=10).status == "failed"
    with pytest.raises(df.InvalidRunState):
        client.retry(run_id)
    assert client.retry(failed) == "queued"
    assert client.wait_for_run(failed, timeout=10).status == "failed"  # fails again, same cause

    runs = client.list_runs("greet")
    assert all(isinstance(r, df.Run) for r in runs)
    assert {r.id for r in runs} >= {run_id, sent.run_ids[0], waiting, parked, failed}
    assert [r.id for r in client.list_runs("greet", status="cancelled")] == [parked]
    assert len(client.list_runs("greet", limit=2)) == 2
    with pytest.raises(df.RunNotFound):
        client.get_run("missing")


async def test_blocking_calls_from_a_thread_while_the_worker_runs_in_the_loop(
    app: df.Dataflows,
) -> None:
    register(app)
    async with app.worker(poll_interval=POLL):
        await asyncio.to_thread(exercise, app.blocking)
    client = app.blocking
    thread = client._thread
    assert thread is not None and thread.is_alive()
    await app.close()
    assert app._blocking is None
    assert not thread.is_alive()  # app.close() closed the blocking client and its loop


def test_blocking_calls_from_sync_code_with_a_worker_in_another_thread(db: DbTarget) -> None:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    register(app)
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            async with app.worker(poll_interval=POLL):
                ready.set()
                await asyncio.to_thread(stop.wait, 30)
        finally:
            await app.close()

    def worker_thread() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=worker_thread, name="worker-loop")
    thread.start()
    try:
        assert ready.wait(30) and not failure
        exercise(app.blocking)
    finally:
        stop.set()
        thread.join(30)
        app.blocking.close()
    assert not failure
    assert app._blocking is not None and app._blocking._loop is None
    app.blocking.close()  # closing twice is harmless
