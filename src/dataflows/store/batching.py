"""Group commit for new step results.

Steps of concurrent runs that finish while a write is in flight are recorded together by the
next write: one transaction, one round trip, however many steps. A step's result is still
committed before its caller continues (each caller awaits its own outcome); a lone step is
written at once, so sequential runs pay no extra latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from dataflows.errors import StoreUnavailable
from dataflows.store.programs import Query

Flush = Callable[[Sequence[Query]], Awaitable[list[int]]]


class StepBatcher:
    """Whoever finds no write in flight becomes the writer, and keeps writing until none wait."""

    def __init__(self, flush: Flush, max_batch: int = 500) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[Query, asyncio.Future[int]]] = []
        self._writing = False

    async def submit(self, query: Query) -> int:
        """Record one step (a ``record_step`` query); its row count once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((query, future))
        if not self._writing:
            self._writing = True
            try:
                await self._write_all(future)
            finally:
                self._writing = False
                if self._waiting:  # the writer was interrupted: hand over to a fresh one
                    asyncio.get_running_loop().create_task(self._resume())
        return await future

    async def _resume(self) -> None:
        if self._writing or not self._waiting:
            return
        self._writing = True
        try:
            await self._write_all(None)
        finally:
            self._writing = False

    async def _write_all(self, own: asyncio.Future[int] | None) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                counts = await self._flush([query for query, _ in batch])
            except Exception as exc:  # each caller sees the failure of the write it was in
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                # The writer itself was cancelled: the others' steps may or may not be
                # committed, which is what "unavailable" tells them (their retry is safe).
                for _, future in batch:
                    if future is own:
                        future.cancel()
                    elif not future.done():
                        future.set_exception(StoreUnavailable("recording steps was interrupted"))
                raise
            for (_, future), count in zip(batch, counts, strict=True):
                if not future.done():
                    future.set_result(count)
