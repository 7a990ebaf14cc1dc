"""Group commit: concurrent writes of the same kind share one transaction.

Whoever finds no write in flight becomes the writer and keeps writing until nobody waits; those
who arrive meanwhile are written together by the next write. Each caller still awaits the commit
of its own write before it goes on, so nothing is acknowledged early (a step's result is
committed before the workflow's next line runs; an event before the API answers 202), and a lone
caller is written at once, paying no extra latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from dataflows.errors import StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")

#: Writes a batch in one transaction; one result per item, in order.
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], max_batch: int = 500) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writing = False

    @property
    def idle(self) -> bool:
        """Nothing waiting and no write under way."""
        return not self._writing and not self._waiting

    async def submit(self, item: T) -> R:
        """Write ``item`` (with whatever else is waiting); its result once committed.

        When nothing waits and no write is under way, ``item`` is written at once and its
        result awaited directly (no future); as any writer, this one then writes whatever came
        meanwhile before it returns (and raises the failure of its own write after that)."""
        if self._writing or self._waiting:
            return await self._join(item)
        self._writing = True
        failure: Exception | None = None
        try:
            try:
                (result,) = await self._flush((item,))
            except Exception as exc:
                failure = exc
            if self._waiting:
                await self._write_all(None)
        finally:
            self._writing = False
            if self._waiting:  # the writer was interrupted: hand over to a fresh one
                asyncio.get_running_loop().create_task(self._resume())
        if failure is not None:
            raise failure
        return result

    async def _join(self, item: T) -> R:
        """Wait to be written with the others (writing them, if no write is under way)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
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

    async def _write_all(self, own: asyncio.Future[R] | None) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as exc:  # each caller sees the failure of the write it was in
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                # The writer itself was cancelled: the others' writes may or may not be
                # committed, which is what "unavailable" tells them (their retry is safe).
                for _, future in batch:
                    if future is own:
                        future.cancel()
                    elif not future.done():
                        future.set_exception(StoreUnavailable("the write was interrupted"))
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
