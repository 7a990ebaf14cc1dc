"""Blocking twins of the client calls, for synchronous code (a Django view, a script).

The one sync-to-async bridge: a private event loop on a background thread, with its own client
of the app (its own connection to the store), runs the client's coroutines and hands back their
results.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from dataflows.durations import Duration
from dataflows.models import Run, SendResult

T = TypeVar("T")


class AsyncClient(Protocol):
    """The client calls that have blocking twins (:class:`dataflows.Dataflows` has them all)."""

    async def send(
        self, name: str, data: dict[str, Any], *, id: str | None = None
    ) -> SendResult: ...

    async def send_many(
        self, events: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> list[SendResult]: ...

    async def start(
        self,
        workflow_id: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str: ...

    async def get_run(self, run_id: str) -> Run: ...

    async def wait_for_run(
        self, run_id: str, timeout: Duration | None = None, *, raise_on_failure: bool = False
    ) -> Run: ...

    async def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Run]: ...

    async def cancel(self, run_id: str) -> str: ...

    async def cancel_runs(
        self,
        *,
        workflow_id: str | None = None,
        status: str | Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        batch: int = 500,
    ) -> int: ...

    async def retry(self, run_id: str) -> str: ...

    async def close(self) -> None: ...


class BlockingClient:
    """``app.blocking.send(...)``, ``.start(...)``, ``.get_run(...)`` … : each call blocks.

    ``open_client`` makes the client the private loop uses, on the first call.
    """

    def __init__(self, open_client: Callable[[], AsyncClient]) -> None:
        self._open_client = open_client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._client: AsyncClient | None = None

    def _call(self, make: Callable[[AsyncClient], Coroutine[Any, Any, T]]) -> T:
        loop = self._ensure_loop()
        assert self._client is not None
        return asyncio.run_coroutine_threadsafe(make(self._client), loop).result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._client = self._open_client()
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
        return self._call(lambda c: c.send(name, data, id=id))

    def send_many(
        self, events: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> list[SendResult]:
        return self._call(lambda c: c.send_many(events))

    def start(
        self,
        workflow_id: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        return self._call(lambda c: c.start(workflow_id, data, idempotency_key=idempotency_key))

    def get_run(self, run_id: str) -> Run:
        return self._call(lambda c: c.get_run(run_id))

    def wait_for_run(
        self, run_id: str, timeout: Duration | None = None, *, raise_on_failure: bool = False
    ) -> Run:
        return self._call(
            lambda c: c.wait_for_run(run_id, timeout, raise_on_failure=raise_on_failure)
        )

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Run]:
        return self._call(lambda c: c.list_runs(workflow_id, status, limit, before=before))

    def cancel(self, run_id: str) -> str:
        return self._call(lambda c: c.cancel(run_id))

    def cancel_runs(
        self,
        *,
        workflow_id: str | None = None,
        status: str | Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        batch: int = 500,
    ) -> int:
        return self._call(
            lambda c: c.cancel_runs(
                workflow_id=workflow_id,
                status=status,
                created_after=created_after,
                created_before=created_before,
                batch=batch,
            )
        )

    def retry(self, run_id: str) -> str:
        return self._call(lambda c: c.retry(run_id))
