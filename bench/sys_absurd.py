"""Absurd under each measure, with its Python SDK's asyncio client (``AsyncAbsurd``).

Tasks are ``register_task`` handlers whose steps are ``ctx.step(name, fn)``; waits are
``ctx.await_event`` and ``ctx.sleep_for``. One ``AsyncAbsurd`` client owns one connection and its
``start_worker`` loop runs the tasks it claims on that connection, so a worker process with ``n``
connections runs ``n`` clients side by side in one event loop; throughput is tried at several
``n``. Worker settings are the SDK's defaults (``poll_interval=0.25``, ``claim_timeout=120``).
Each measure uses a fresh queue (Absurd's tables per queue) in the database the harness prepared
with ``absurdctl init``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from absurd_sdk import AsyncAbsurd, AsyncTaskContext

from bench.cpu import Stretch
from bench.dbs import scalar
from bench.procs import RssSampler, start_process, stop_process, wait_alive
from bench.sys_dataflows import wait_until

FINISHED: set[int] = set()
#: Times the sequential run (set by sequential(); None while measuring throughput).
STRETCH: Stretch | None = None
RESUMED: dict[int, float] = {}
INTENDED: dict[int, float] = {}
SIGNALS: dict[int, asyncio.Event] = {}


async def noop(i: int) -> int:
    return i


async def steps_task(params: dict[str, Any], ctx: AsyncTaskContext) -> int:
    if STRETCH is not None:
        STRETCH.start()
    for i in range(params["steps"]):
        await ctx.step("step", lambda i=i: noop(i))  # type: ignore[misc]
    if STRETCH is not None:
        STRETCH.stop()
    FINISHED.add(params["i"])
    return int(params["steps"])


async def event_task(params: dict[str, Any], ctx: AsyncTaskContext) -> None:
    await ctx.await_event(f"go.{params['i']}")
    RESUMED.setdefault(params["i"], time.perf_counter())
    SIGNALS[params["i"]].set()


async def sleep_task(params: dict[str, Any], ctx: AsyncTaskContext) -> None:
    INTENDED.setdefault(params["i"], time.time() + 1.0)
    await ctx.sleep_for("nap", 1.0)
    RESUMED.setdefault(params["i"], time.time())


async def hold_task(params: dict[str, Any], ctx: AsyncTaskContext) -> None:
    await ctx.await_event(f"release.{params['i']}")


TASKS: dict[str, Callable[[dict[str, Any], AsyncTaskContext], Awaitable[Any]]] = {
    "steps": steps_task,
    "event": event_task,
    "sleep": sleep_task,
    "hold": hold_task,
}


def new_queue() -> str:
    return f"q_{secrets.token_hex(4)}"


def client(url: str, queue: str) -> AsyncAbsurd:
    absurd = AsyncAbsurd(url, queue_name=queue)
    for name, handler in TASKS.items():
        absurd.register_task(name)(handler)
    return absurd


class Workers:
    """``connections`` clients, each running the SDK's worker loop, in this event loop."""

    def __init__(self, url: str, queue: str, connections: int) -> None:
        self.clients = [client(url, queue) for _ in range(connections)]
        self.loops: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Workers:
        for c in self.clients:
            await c._ensure_connected()  # connect before the clock starts
        self.loops = [asyncio.create_task(c.start_worker()) for c in self.clients]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in self.clients:
            c.stop_worker()
        await asyncio.wait(self.loops, timeout=2)
        for loop in self.loops:
            loop.cancel()
        await asyncio.gather(*self.loops, return_exceptions=True)
        for c in self.clients:
            await c.close()


def count_tasks(url: str, queue: str, state: str) -> Callable[[], Awaitable[int]]:
    query = f"SELECT count(*) FROM absurd.t_{queue} WHERE state = '{state}'"

    async def count() -> int:
        return await asyncio.to_thread(scalar, url, query)

    return count


def reach(count: Callable[[], Awaitable[int]], target: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await count() >= target

    return check


async def with_queue(url: str, body: Callable[[AsyncAbsurd, str], Awaitable[Any]]) -> Any:
    """Run ``body(spawner, queue)`` against a fresh queue, dropped afterwards."""
    queue = new_queue()
    spawner = client(url, queue)
    await spawner.create_queue()
    try:
        return await body(spawner, queue)
    finally:
        await spawner.drop_queue()
        await spawner.close()


async def spawn_all(spawner: AsyncAbsurd, task: str, count: int, **params: Any) -> None:
    for i in range(count):
        await spawner.spawn(task, {"i": i, **params})


# -- the measures -------------------------------------------------------------------------------


def sequential(url: str, steps: int) -> dict[str, Any]:
    async def body(spawner: AsyncAbsurd, queue: str) -> None:
        await spawner.spawn("steps", {"i": 0, "steps": steps})
        async with Workers(url, queue, 1):
            await wait_until(lambda: 0 in FINISHED, 600, 0.005)

    global STRETCH
    STRETCH = Stretch(server=True)
    asyncio.run(with_queue(url, body))
    figures = STRETCH.figures()
    STRETCH = None
    return {"steps": steps, **figures}


def throughput(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` is the number of connections (clients) in the worker process."""

    async def body(spawner: AsyncAbsurd, queue: str) -> float:
        await spawn_all(spawner, "steps", runs, steps=steps)
        async with Workers(url, queue, concurrency):
            start = time.perf_counter()
            await wait_until(lambda: len(FINISHED) >= runs, 3600, 0.005)
            await wait_until(reach(count_tasks(url, queue, "completed"), runs), 600, 0.005)
            return time.perf_counter() - start

    seconds = asyncio.run(with_queue(url, body))
    return {"runs": runs, "steps_per_run": steps, "concurrency": concurrency, "seconds": seconds}


def event(url: str, trials: int, gap: float) -> dict[str, Any]:
    async def body(spawner: AsyncAbsurd, queue: str) -> list[float]:
        for i in range(trials):
            SIGNALS[i] = asyncio.Event()
        await spawn_all(spawner, "event", trials)
        async with Workers(url, queue, 1):
            await wait_until(reach(count_tasks(url, queue, "sleeping"), trials), 600, 0.05)
            latencies = []
            for i in range(trials):
                sent = time.perf_counter()
                await spawner.emit_event(f"go.{i}", {"i": i})
                await asyncio.wait_for(SIGNALS[i].wait(), 30)
                latencies.append(RESUMED[i] - sent)
                await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
            return latencies

    return {"latencies": asyncio.run(with_queue(url, body))}


def sleep(url: str, trials: int, gap: float) -> dict[str, Any]:
    async def body(spawner: AsyncAbsurd, queue: str) -> None:
        async with Workers(url, queue, 1):
            for i in range(trials):
                await spawner.spawn("sleep", {"i": i})
                await asyncio.sleep(gap)
            await wait_until(lambda: len(RESUMED) >= trials, 120, 0.05)

    asyncio.run(with_queue(url, body))
    return {"lateness": [RESUMED[i] - INTENDED[i] for i in range(trials)]}


#: Connections of the worker process in the memory measure.
HOLD_CONNECTIONS = 4


def memory(url: str, count: int) -> dict[str, Any]:
    """A separate worker process takes ``count`` tasks into ``await_event``; then all are released."""

    async def body(spawner: AsyncAbsurd, queue: str) -> dict[str, Any]:
        worker = start_process(["-m", "bench.apps.hold_absurd", url, queue, str(HOLD_CONNECTIONS)])
        sampler = RssSampler(worker.pid)
        try:
            await asyncio.to_thread(wait_alive, worker, 3)
            figures: dict[str, Any] = {"rss_idle_mb": sampler.now()}
            start = time.perf_counter()
            await spawn_all(spawner, "hold", count)
            await wait_until(reach(count_tasks(url, queue, "sleeping"), count), 3600, 1.0)
            figures["suspend_s"] = time.perf_counter() - start
            await asyncio.to_thread(wait_alive, worker, 3)
            figures["rss_suspended_mb"] = sampler.now()
            start = time.perf_counter()
            for i in range(count):
                await spawner.emit_event(f"release.{i}", {"i": i})
            completed = count_tasks(url, queue, "completed")
            with contextlib.suppress(TimeoutError):  # counted below
                await wait_until(reach(completed, count), 3600, 1.0)
            figures["resume_s"] = time.perf_counter() - start
            figures["resumed"] = await completed()
            figures["rss_after_mb"] = sampler.now()
            figures["rss_peak_mb"] = sampler.peak
            return figures
        finally:
            sampler.stop()
            stop_process(worker)

    figures = asyncio.run(with_queue(url, body))
    return {"count": count, "all_resumed": figures["resumed"] == count, **figures}
