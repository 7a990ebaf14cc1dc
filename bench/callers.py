"""Concurrent callers: ``n`` calls made by a fixed number of concurrent asyncio callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def callers_do(
    n: int, callers: int, call: Callable[[int], Awaitable[Any]]
) -> tuple[float, list[float], list[Any]]:
    """``n`` awaited ``call(i)`` by ``callers`` concurrent callers: (wall seconds, one latency
    per call, the results by ``i``)."""
    latencies: list[float] = []
    results: list[Any] = [None] * n
    left = iter(range(n))

    async def caller() -> None:
        for i in left:
            start = time.perf_counter()
            results[i] = await call(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - start, latencies, results
