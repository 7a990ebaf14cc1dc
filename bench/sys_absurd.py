"""Absurd under each measure, with its Python SDK's asyncio client (``AsyncAbsurd``).

Tasks are ``register_task`` handlers whose steps are ``ctx.step(name, fn)``; waits are
``ctx.await_event`` and ``ctx.sleep_for``. One ``AsyncAbsurd`` client owns one connection and its
``start_worker`` loop runs the tasks it claims on that connection, so a worker process with ``n``
connections runs ``n`` clients side by side in one event loop; throughput is tried at several
``n``. Worker settings are the SDK's defaults (``poll_interval=0.25``, ``claim_timeout=120``).
Each measure uses a fresh queue (Absurd's tables per queue) in the database the harness prepared
with ``absurdctl init``.

Starts and mixed spawn from concurrent callers sharing ``SPAWN_CONNECTIONS`` clients (an
application's pool; dataflows' holds 10). event_remote and two_workers run the tasks in worker
processes (``python -m bench.apps.remote_absurd``) that connect, report ready, and start their
loops on SIGUSR1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
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


async def remote_task(params: dict[str, Any], ctx: AsyncTaskContext) -> None:
    """event_remote's task, in a worker process: the resume time goes to a marker file."""
    await ctx.await_event(f"go.{params['i']}")
    write_marker(Path(params["markers"]) / f"resumed-{params['i']}", repr(time.time()))


def write_marker(path: Path, text: str) -> None:
    """Write a marker whole (rename), so a reader never sees it half written."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(text)
    temp.rename(path)


TASKS: dict[str, Callable[[dict[str, Any], AsyncTaskContext], Awaitable[Any]]] = {
    "steps": steps_task,
    "event": event_task,
    "sleep": sleep_task,
    "hold": hold_task,
    "remote": remote_task,
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


# -- starts and mixed: concurrent callers ---------------------------------------------------------

#: Clients (connections) the concurrent callers of starts and mixed share, as an application
#: shares a pool (dataflows' pool holds 10 connections).
SPAWN_CONNECTIONS = 10


class FairClients:
    """A set of clients handed out first come, first served, as a connection pool does
    (psycopg_pool, SQLAlchemy): a returned client goes to the longest-waiting caller. With a plain
    ``asyncio.Queue`` the caller that returns a client takes it straight back on its next call
    while the woken waiter is still scheduled, so a few callers keep the clients and the others
    starve -- their rare, very long waits then hardly show in the percentiles."""

    def __init__(self, clients: list[AsyncAbsurd]) -> None:
        self.free = list(clients)
        self.waiters: collections.deque[asyncio.Future[AsyncAbsurd]] = collections.deque()

    async def take(self) -> AsyncAbsurd:
        if self.free and not self.waiters:
            return self.free.pop()
        waiter: asyncio.Future[AsyncAbsurd] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def give(self, c: AsyncAbsurd) -> None:
        if self.waiters:
            self.waiters.popleft().set_result(c)
        else:
            self.free.append(c)


async def spawn_by_callers(
    url: str, queue: str, callers: int, count: int, task: str, **params: Any
) -> tuple[float, list[float]]:
    """``count`` spawns by ``callers`` concurrent callers taking a free client, first come first
    served, from a shared set of ``SPAWN_CONNECTIONS`` (``FairClients``): (wall seconds, one
    latency per spawn, waiting for a client included)."""
    clients = [client(url, queue) for _ in range(min(callers, SPAWN_CONNECTIONS))]
    for c in clients:
        await c._ensure_connected()
    pool = FairClients(clients)
    latencies: list[float] = []
    left = iter(range(count))

    async def caller() -> None:
        for i in left:
            began = time.perf_counter()
            c = await pool.take()
            try:
                await c.spawn(task, {"i": i, **params})
            finally:
                pool.give(c)
            latencies.append(time.perf_counter() - began)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return time.perf_counter() - began, latencies
    finally:
        for c in clients:
            await c.close()


def starts(url: str, starts: int, callers: int) -> dict[str, Any]:
    """``starts`` spawns of a trivial task by ``callers`` concurrent callers; no worker runs."""

    async def body(spawner: AsyncAbsurd, queue: str) -> tuple[float, list[float]]:
        await spawner.spawn("steps", {"i": -1, "steps": 0})  # untimed: the queue's first spawn
        return await spawn_by_callers(url, queue, callers, starts, "steps", steps=0)

    seconds, latencies = asyncio.run(with_queue(url, body))
    return {"starts": starts, "callers": callers, "seconds": seconds, "latencies": latencies}


def mixed(url: str, runs: int, steps: int, concurrency: int, callers: int) -> dict[str, Any]:
    """(a) the throughput measure with ``concurrency`` connections on a fresh queue; (b) on another
    fresh queue, the same worker loops run in this event loop while ``callers`` concurrent callers
    spawn the runs; timed from the first spawn until every task completed."""

    async def drain(spawner: AsyncAbsurd, queue: str) -> float:
        FINISHED.clear()
        await spawn_all(spawner, "steps", runs, steps=steps)
        async with Workers(url, queue, concurrency):
            began = time.perf_counter()
            await wait_until(lambda: len(FINISHED) >= runs, 3600, 0.005)
            await wait_until(reach(count_tasks(url, queue, "completed"), runs), 600, 0.005)
            return time.perf_counter() - began

    async def both(spawner: AsyncAbsurd, queue: str) -> tuple[float, list[float]]:
        FINISHED.clear()
        async with Workers(url, queue, concurrency):
            began = time.perf_counter()
            _, latencies = await spawn_by_callers(url, queue, callers, runs, "steps", steps=steps)
            await wait_until(lambda: len(FINISHED) >= runs, 3600, 0.005)
            await wait_until(reach(count_tasks(url, queue, "completed"), runs), 600, 0.005)
            return time.perf_counter() - began, latencies

    drain_seconds = asyncio.run(with_queue(url, drain))
    mixed_seconds, latencies = asyncio.run(with_queue(url, both))
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "drain_seconds": drain_seconds,
        "mixed_seconds": mixed_seconds,
        "start_latencies": latencies,
    }


# -- worker processes: event_remote and two_workers -------------------------------------------------


class Remote:
    """Worker processes (``python -m bench.apps.remote_absurd``) on ``queue``, connected and
    waiting for the go (SIGUSR1)."""

    def __init__(self, url: str, queue: str, processes: int, connections: int) -> None:
        self.markers = Path(tempfile.mkdtemp(prefix="bench_absurd_"))
        argv = ["-m", "bench.apps.remote_absurd", url, queue, str(connections), str(self.markers)]
        self.workers: list[subprocess.Popen[bytes]] = [
            start_process(argv) for _ in range(processes)
        ]

    async def ready(self) -> None:
        def count() -> int:
            for proc in self.workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"Absurd worker process exited with {proc.returncode}")
            return len(list(self.markers.glob("ready-*")))

        await wait_until(lambda: count() >= len(self.workers), 120, 0.05)

    def go(self) -> None:
        for proc in self.workers:
            os.kill(proc.pid, signal.SIGUSR1)

    def close(self) -> None:
        for proc in self.workers:
            stop_process(proc)
        shutil.rmtree(self.markers, ignore_errors=True)


def event_remote(url: str, trials: int, gap: float) -> dict[str, Any]:
    """Tasks in a worker process (one connection) wait in ``await_event``; this process emits each
    event in turn; the worker writes ``time.time()`` when the code after the wait runs. Latency =
    that - ``time.time()`` just before ``emit_event``."""

    async def body(spawner: AsyncAbsurd, queue: str) -> list[float]:
        remote = Remote(url, queue, 1, 1)
        try:
            await remote.ready()
            for i in range(trials):
                await spawner.spawn("remote", {"i": i, "markers": str(remote.markers)})
            remote.go()
            await wait_until(reach(count_tasks(url, queue, "sleeping"), trials), 600, 0.05)
            latencies = []
            for i in range(trials):
                marker = remote.markers / f"resumed-{i}"
                sent = time.time()
                await spawner.emit_event(f"go.{i}", {"i": i})
                await wait_until(marker.exists, 30, 0.001)
                latencies.append(float(marker.read_text()) - sent)
                await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
            return latencies
        finally:
            remote.close()

    return {"latencies": asyncio.run(with_queue(url, body))}


def two_workers(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """All runs spawned on a fresh queue, one worker process of ``concurrency`` connections started
    and connected, then told to go (SIGUSR1); timed until every task completed. Then the same on
    another fresh queue with two such processes."""

    def drain(processes: int) -> float:
        async def body(spawner: AsyncAbsurd, queue: str) -> float:
            await spawn_all(spawner, "steps", runs, steps=steps)
            remote = Remote(url, queue, processes, concurrency)
            try:
                await remote.ready()
                query = f"SELECT count(*) FROM absurd.t_{queue} WHERE state = 'completed'"
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

                    async def completed() -> bool:  # on one connection, not one per poll
                        row = await (await conn.execute(query.encode())).fetchone()
                        return row is not None and int(row[0]) >= runs

                    began = time.perf_counter()
                    remote.go()
                    await wait_until(completed, 3600, 0.01)
                    return time.perf_counter() - began
            finally:
                remote.close()

        seconds: float = asyncio.run(with_queue(url, body))
        return seconds

    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "one_seconds": drain(1),
        "two_seconds": drain(2),
    }
