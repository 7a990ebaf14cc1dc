"""Temporal under each measure: the Python SDK (``temporalio``) against ``temporal server
start-dev`` with its state in a SQLite file (bench.servers.TemporalServer), started for the
measure and stopped after it.

A step is a regular activity; the sequential measure also times the same workflow with local
activities (``local_ms_per_step``). The worker runs in the measuring process (the memory,
failover, event_remote and two_workers measures' in processes of their own), with the SDK's
defaults (sandboxed workflows, sticky cache of 1000) except the throughput, mixed and two_workers
measures' ``concurrency``: ``max_concurrent_activities`` and ``max_concurrent_workflow_tasks``.
Runs are started with ``client.start_workflow`` from concurrent asyncio tasks sharing one Client. The harness's ``url`` (PostgreSQL) is not used: Temporal keeps
its state in its own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench import marks
from bench.apps.temporal_flows import ACTIVITIES, RUNNER, WORKFLOWS, Sleeper, Steps, Waiter
from bench.callers import callers_do
from bench.cpu import Stretch
from bench.procs import RssSampler, rss_mb, start_process, stop_process, wait_alive
from bench.servers import ServerStartError, TemporalServer


async def connect(server: TemporalServer, timeout: float = 30) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(server.address)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ServerStartError("temporal", f"no client connection: {exc}") from exc
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def temporal() -> AsyncIterator[tuple[TemporalServer, Client]]:
    with TemporalServer() as server:
        yield server, await connect(server)


def worker(client: Client, queue: str, concurrency: int | None = None) -> Worker:
    limits = {}
    if concurrency:
        limits = {
            "max_concurrent_activities": concurrency,
            "max_concurrent_workflow_tasks": concurrency,
        }
    return Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        workflow_runner=RUNNER,
        **limits,
    )  # type: ignore[arg-type]


async def wait_until(check: Callable[[], bool], timeout: float, every: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached within {timeout}s")
        await asyncio.sleep(every)


def new_queue() -> str:
    return f"bench-{secrets.token_hex(4)}"


# -- the measures -------------------------------------------------------------------------------


def sequential(url: str, steps: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with temporal() as (server, client):
            queue = new_queue()
            async with worker(client, queue):
                # A warm-up run, so the first workflow task's sandbox set-up is not timed.
                await client.execute_workflow(
                    Steps.run, args=[1, False], id=new_queue(), task_queue=queue
                )
                stretch = Stretch(server=True, name=server.comm)
                stretch.start()
                await client.execute_workflow(
                    Steps.run, args=[steps, False], id=new_queue(), task_queue=queue
                )
                stretch.stop()
                start = time.perf_counter()
                await client.execute_workflow(
                    Steps.run, args=[steps, True], id=new_queue(), task_queue=queue
                )
                local = time.perf_counter() - start
        return {**stretch.figures(), "local_seconds": local}

    return {"steps": steps, **asyncio.run(main())}


def throughput(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """Every run is started before the worker is; the clock runs until all completed."""

    async def main() -> float:
        async with temporal() as (_, client):
            queue = new_queue()
            handles = [
                await client.start_workflow(
                    Steps.run, args=[steps, False], id=f"{queue}-{i}", task_queue=queue
                )
                for i in range(runs)
            ]
            async with worker(client, queue, concurrency):
                start = time.perf_counter()
                await asyncio.gather(*(h.result() for h in handles))
                return time.perf_counter() - start

    seconds = asyncio.run(main())
    return {"runs": runs, "steps_per_run": steps, "concurrency": concurrency, "seconds": seconds}


def event(url: str, trials: int, gap: float) -> dict[str, Any]:
    """Workflows wait for a signal; each is signalled in turn and timed until its code goes on."""

    async def main() -> list[float]:
        async with temporal() as (_, client):
            queue = new_queue()
            async with worker(client, queue):
                handles = [
                    await client.start_workflow(Waiter.run, i, id=f"{queue}-{i}", task_queue=queue)
                    for i in range(trials)
                ]
                await wait_until(lambda: len(marks.READY) >= trials, 600, 0.05)
                await asyncio.sleep(1.0)
                latencies = []
                for i, handle in enumerate(handles):
                    sent = time.perf_counter()
                    await handle.signal(Waiter.release)
                    await wait_until(lambda i=i: i in marks.RESUMED, 30, 0.002)  # type: ignore[misc]
                    latencies.append(marks.RESUMED[i] - sent)
                    await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
                return latencies

    return {"latencies": asyncio.run(main())}


def sleep(url: str, trials: int, gap: float) -> dict[str, Any]:
    async def main() -> None:
        async with temporal() as (_, client):
            queue = new_queue()
            async with worker(client, queue):
                for i in range(trials):
                    await client.start_workflow(Sleeper.run, i, id=f"{queue}-{i}", task_queue=queue)
                    await asyncio.sleep(gap)
                await wait_until(lambda: len(marks.WOKE) >= trials, 120, 0.05)

    asyncio.run(main())
    return {"lateness": [marks.WOKE[i] - marks.INTENDED[i] for i in range(trials)]}


def memory(url: str, count: int) -> dict[str, Any]:
    """A separate worker process takes ``count`` workflows into ``wait_condition``; then all are
    signalled. Its counts come through a file it rewrites (bench.apps.hold_temporal)."""

    async def main() -> dict[str, Any]:
        async with temporal() as (server, client):
            queue = new_queue()
            counts = server.dir / "counts"
            proc = start_process(
                ["-m", "bench.apps.hold_temporal", server.address, queue, str(counts)]
            )
            sampler = RssSampler(proc.pid)
            try:
                await asyncio.to_thread(wait_alive, proc, 3)
                figures: dict[str, Any] = {"rss_idle_mb": sampler.now()}
                start = time.perf_counter()
                handles = [
                    await client.start_workflow(Waiter.run, i, id=f"{queue}-{i}", task_queue=queue)
                    for i in range(count)
                ]
                await wait_until(lambda: _counts(counts)[0] >= count, 3600, 0.5)
                figures["suspend_s"] = time.perf_counter() - start
                await asyncio.to_thread(wait_alive, proc, 3)
                figures["rss_suspended_mb"] = sampler.now()
                figures["server_rss_suspended_mb"] = rss_mb(server.pid)
                start = time.perf_counter()
                for handle in handles:
                    await handle.signal(Waiter.release)
                with contextlib.suppress(TimeoutError):  # counted below
                    await wait_until(lambda: _counts(counts)[1] >= count, 3600, 0.5)
                figures["resume_s"] = time.perf_counter() - start
                figures["resumed"] = _counts(counts)[1]
                figures["rss_after_mb"] = sampler.now()
                figures["rss_peak_mb"] = sampler.peak
                return figures
            finally:
                sampler.stop()
                stop_process(proc)

    figures = asyncio.run(main())
    return {"count": count, "all_resumed": figures["resumed"] == count, **figures}


def _counts(path: Path) -> tuple[int, int]:
    try:
        ready, done = path.read_text().split()
        return int(ready), int(done)
    except (OSError, ValueError):
        return 0, 0


#: Worker processes in the failover measure (as for dataflows).
FAILOVER_WORKERS = 3


def failover(url: str, kills: int) -> dict[str, Any]:
    """Three worker processes; ``kills`` times: start a workflow, SIGKILL the worker whose activity
    holds it, and time from the kill to the moment the activity's retry began on another worker
    (set by the heartbeat timeout, bench.apps.temporal_flows.HEARTBEAT_TIMEOUT); then start a
    worker in place of the dead one."""
    import os
    import signal
    import tempfile

    from bench.apps.temporal_flows import Failover

    async def main() -> list[float]:
        markers = Path(tempfile.mkdtemp(prefix="bench_failover_"))
        async with temporal() as (server, client):
            queue = new_queue()
            workers: dict[int, Any] = {}

            def spawn() -> None:
                proc = start_process(["-m", "bench.apps.failover_temporal", server.address, queue])
                workers[proc.pid] = proc

            try:
                for _ in range(FAILOVER_WORKERS):
                    spawn()
                taken_over = []
                for k in range(kills):
                    marker = markers / f"held-{k}"
                    handle = await client.start_workflow(
                        Failover.run, str(marker), id=f"{queue}-{k}", task_queue=queue
                    )
                    await wait_until(
                        lambda m=marker: m.exists() and m.read_text() != "", 120, 0.005
                    )  # type: ignore[misc]
                    holder = int(marker.read_text())
                    killed_at = time.time()
                    os.kill(holder, signal.SIGKILL)
                    result = await handle.result()
                    taken_over.append(result["resumed_at"] - killed_at)
                    workers.pop(holder).wait()
                    spawn()
                return taken_over
            finally:
                for proc in workers.values():
                    stop_process(proc, grace=5)

    return {"seconds": asyncio.run(main())}


# -- starts, mixed, event_remote, two_workers ---------------------------------------------------

#: Concurrent callers that queue the runs of the drain and two_workers measures (not timed).
STARTERS = 64


def start_steps(client: Client, queue: str, steps: int) -> Callable[[int], Any]:
    def call(i: int) -> Any:
        return client.start_workflow(
            Steps.run, args=[steps, False], id=f"{queue}-{i}", task_queue=queue
        )

    return call


def starts(url: str, starts: int, callers: int) -> dict[str, Any]:
    """``client.start_workflow`` of a one-step workflow by ``callers`` asyncio tasks sharing one
    Client; no worker polls the queue."""

    async def main() -> tuple[float, list[float]]:
        async with temporal() as (_, client):
            seconds, latencies, _ = await callers_do(
                starts, callers, start_steps(client, new_queue(), 1)
            )
            return seconds, latencies

    seconds, latencies = asyncio.run(main())
    return {"starts": starts, "callers": callers, "seconds": seconds, "latencies": latencies}


def mixed(url: str, runs: int, steps: int, concurrency: int, callers: int) -> dict[str, Any]:
    """Each half on a fresh server. Drain: the runs are started (64 callers, not timed), then a
    worker of ``concurrency`` (``max_concurrent_activities`` = ``max_concurrent_workflow_tasks``)
    in this process is timed until all completed. Mixed: the same worker runs in this process
    first; ``callers`` asyncio tasks on the same Client start the runs while it executes them,
    timed from the first start to the last result."""

    async def drain() -> float:
        async with temporal() as (_, client):
            queue = new_queue()
            _, _, handles = await callers_do(runs, STARTERS, start_steps(client, queue, steps))
            async with worker(client, queue, concurrency):
                start = time.perf_counter()
                await asyncio.gather(*(h.result() for h in handles))
                return time.perf_counter() - start

    async def mix() -> tuple[float, list[float]]:
        async with temporal() as (_, client):
            queue = new_queue()
            call = start_steps(client, queue, steps)
            results: list[asyncio.Task[Any]] = []

            async def start_and_follow(i: int) -> None:
                handle = await call(i)
                results.append(asyncio.create_task(handle.result()))

            async with worker(client, queue, concurrency):
                start = time.perf_counter()
                _, latencies, _ = await callers_do(runs, callers, start_and_follow)
                await asyncio.gather(*results)
                return time.perf_counter() - start, latencies

    drain_seconds = asyncio.run(drain())
    mixed_seconds, latencies = asyncio.run(mix())
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "callers": callers,
        "drain_seconds": drain_seconds,
        "mixed_seconds": mixed_seconds,
        "start_latencies": latencies,
    }


def spawn_worker(
    server: TemporalServer, queue: str, concurrency: int, name: str, hold: bool
) -> tuple[Any, Path]:
    """A worker process (bench.apps.worker_temporal) and its status file."""
    status = server.dir / f"worker-{name}"
    argv = ["-m", "bench.apps.worker_temporal", server.address, queue, str(concurrency)]
    proc = start_process([*argv, str(status), *(["--hold"] if hold else [])])
    return proc, status


def alive(*procs: Any) -> bool:
    """True, or RuntimeError if a worker process died."""
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"worker process exited with {proc.returncode}")
    return True


def event_remote(url: str, trials: int, gap: float) -> dict[str, Any]:
    """As ``event``, with the worker (SDK defaults) in a process of its own
    (bench.apps.worker_temporal): the signal is sent from this process's client, the workflow
    returns the time.time() at which its code went on after the wait."""

    async def main() -> list[float]:
        async with temporal() as (server, client):
            queue = new_queue()
            proc, status = spawn_worker(server, queue, 0, "event", hold=False)
            try:
                handles = [
                    await client.start_workflow(Waiter.run, i, id=f"{queue}-{i}", task_queue=queue)
                    for i in range(trials)
                ]
                await wait_until(lambda: alive(proc) and _counts(status)[0] >= trials, 600, 0.05)
                await asyncio.sleep(1.0)
                latencies = []
                for handle in handles:
                    sent = time.time()
                    await handle.signal(Waiter.release)
                    resumed_at: float = await handle.result()
                    latencies.append(resumed_at - sent)
                    await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
                return latencies
            finally:
                stop_process(proc, grace=5)

    return {"latencies": asyncio.run(main())}


def two_workers(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """The drain of ``mixed`` by one, then (on a fresh server) two worker processes
    (bench.apps.worker_temporal) of ``concurrency`` each. The processes are started and connected
    first and hold; the runs are started (64 callers, not timed); the clock starts when the
    processes are told to go (SIGUSR1) and stops when every result is in."""
    import os
    import signal

    from bench.servers import process_cpu_seconds

    async def half(processes: int) -> tuple[float, list[float]]:
        async with temporal() as (server, client):
            queue = new_queue()
            workers = [
                spawn_worker(server, queue, concurrency, str(n), hold=True)
                for n in range(processes)
            ]
            procs = [proc for proc, _ in workers]
            try:
                await wait_until(
                    lambda: alive(*procs) and all(s.exists() for _, s in workers), 120, 0.05
                )
                _, _, handles = await callers_do(runs, STARTERS, start_steps(client, queue, steps))
                cpu = [process_cpu_seconds(p.pid) for p in procs]
                start = time.perf_counter()
                for proc in procs:
                    os.kill(proc.pid, signal.SIGUSR1)
                await asyncio.gather(*(h.result() for h in handles))
                seconds = time.perf_counter() - start
                return seconds, [
                    process_cpu_seconds(p.pid) - c for p, c in zip(procs, cpu, strict=True)
                ]
            finally:
                for proc in procs:
                    stop_process(proc, grace=5)

    one, one_cpu = asyncio.run(half(1))
    two, two_cpu = asyncio.run(half(2))
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "one_seconds": one,
        "two_seconds": two,
        "one_worker_cpu_seconds": one_cpu,
        "two_worker_cpu_seconds": two_cpu,
    }
