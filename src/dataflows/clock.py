"""Time, injectable so tests can move it.

Everything that compares or records time asks a :class:`Clock`. The stores record the times the
engine hands them, so a test that swaps in a :class:`ManualClock` controls every timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (returns early only if cancelled)."""
        ...


class SystemClock:
    """The machine's clock, corrected by ``offset`` seconds (the store may align it to the DB)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to. Sleepers wake as soon as time passes their deadline."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the time is moved (workers re-check their timers)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        self._now = when
        due = [w for w in self._waiters if w[0] <= when]
        self._waiters = [w for w in self._waiters if w[0] > when]
        for _, fut in due:
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut)
        for listener in list(self._listeners):
            listener()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._now + seconds, fut))
        await fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
