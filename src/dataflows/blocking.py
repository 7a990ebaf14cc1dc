"""Blocking twins of the client calls, for synchronous code (a Django view, a script).

The one sync-to-async bridge: a private event loop on a background thread, with its own
connection to the store, runs the app's coroutines and hands back their results.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from dataflows.durations import Duration
from dataflows.models import Run, SendResult

if TYPE_CHECKING:
    from dataflows.app import Dataflows

T = TypeVar("T")


class BlockingClient:
    """``app.blocking.send(...)``, ``.start(...)``, ``.get_run(...)`` … : each call blocks."""

    def __init__(self, app: Dataflows) -> None:
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._client: Dataflows | None = None

    def _call(self, make: Any) -> Any:
        loop = self._ensure_loop()
        assert self._client is not None
        coro: Coroutine[Any, Any, Any] = make(self._client)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                from dataflows.app import Dataflows

                app = self._app
                self._client = Dataflows(
                    app.database_url,
                    schema=app.schema,
                    auto_migrate=app.auto_migrate,
                    clock=app.clock,
                    retry=app.default_retry,
                    max_payload_bytes=app.max_payload,
                )
                self._client.registry = app.registry
                # Tell the app's own workers about work started from here (SQLite has no
                # cross-connection notifications; on PostgreSQL this only shortens the path).
                self._client.store.add_listener(app.notify_workers_threadsafe)
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="dataflows-blocking", daemon=True
                )
                self._thread.start()
            return self._loop

    def close(self) -> None:
        with self._lock:
            loop, client = self._loop, self._client
            self._loop = self._client = None
        if loop is None or client is None:
            return
        asyncio.run_coroutine_threadsafe(client.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
        loop.close()

    def send(self, name: str, data: dict[str, Any], *, id: str | None = None) -> SendResult:
        result: SendResult = self._call(lambda c: c.send(name, data, id=id))
        return result

    def send_many(
        self, events: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> list[SendResult]:
        result: list[SendResult] = self._call(lambda c: c.send_many(events))
        return result

    def start(
        self,
        workflow_id: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        result: str = self._call(
            lambda c: c.start(workflow_id, data, idempotency_key=idempotency_key)
        )
        return result

    def get_run(self, run_id: str) -> Run:
        result: Run = self._call(lambda c: c.get_run(run_id))
        return result

    def wait_for_run(
        self, run_id: str, timeout: Duration | None = None, *, raise_on_failure: bool = False
    ) -> Run:
        result: Run = self._call(
            lambda c: c.wait_for_run(run_id, timeout, raise_on_failure=raise_on_failure)
        )
        return result

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Run]:
        result: list[Run] = self._call(
            lambda c: c.list_runs(workflow_id, status, limit, before=before)
        )
        return result

    def cancel(self, run_id: str) -> str:
        result: str = self._call(lambda c: c.cancel(run_id))
        return result

    def retry(self, run_id: str) -> str:
        result: str = self._call(lambda c: c.retry(run_id))
        return result
