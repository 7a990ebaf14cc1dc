"""dataflows under each measure: an in-process worker (``app.worker``) running trivial async steps.

Every measure uses a fresh PostgreSQL schema (or the fresh SQLite file the harness passes) and
times from inside the workflow code or from the moment the worker starts, never including schema
creation. Each function returns a JSON-ready dict of raw figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
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

import dataflows as df
from bench.cpu import Stretch
from bench.dbs import drop_schema, scalar
from bench.procs import RssSampler, start_process, stop_process

BATCH = 500  # events per send_many transaction when enqueueing


async def noop(i: int) -> int:
    return i


def new_app(url: str) -> tuple[df.Dataflows, str | None]:
    """An app on a fresh schema (PostgreSQL; returned, to be dropped) or on the given file."""
    schema = None if url.startswith("sqlite:") else f"bench_{secrets.token_hex(4)}"
    return df.Dataflows(url, schema=schema or "dataflows", retention=None), schema


def _cleanup(url: str, schema: str | None) -> None:
    if schema is not None:
        drop_schema(url, schema)


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, every: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached within {timeout}s")
        await asyncio.sleep(every)


def runs_reach(
    app: df.Dataflows, workflow_id: str, status: str, count: int
) -> Callable[[], Awaitable[bool]]:
    """A check: at least ``count`` runs of ``workflow_id`` have ``status``."""

    async def check() -> bool:
        runs = await app.list_runs(workflow_id=workflow_id, status=status, limit=count)
        return len(runs) >= count

    return check


async def enqueue(app: df.Dataflows, name: str, count: int) -> None:
    for first in range(0, count, BATCH):
        batch = range(first, min(first + BATCH, count))
        await app.send_many([(name, {"i": i}, None) for i in batch])


# -- sequential ---------------------------------------------------------------------------------


def sequential(url: str, steps: int, schema: str | None = None) -> dict[str, Any]:
    """One run of ``steps`` trivial steps, timed from before the first to after the last.

    ``schema``: use this existing schema (and leave it) instead of a fresh one.
    """
    if schema is None:
        app, schema = new_app(url)
    else:
        app, schema = df.Dataflows(url, schema=schema, retention=None), None
    stretch = Stretch(server=not url.startswith("sqlite:"))

    @app.workflow("sequential")
    async def run_steps(event: df.Event, step: df.Step) -> int:
        stretch.start()
        for i in range(steps):
            await step.run("step", noop, i)
        stretch.stop()
        return steps

    async def main() -> None:
        async with app, app.worker(concurrency=1):
            run_id = await app.start("sequential", {})
            await app.wait_for_run(run_id, timeout=600, raise_on_failure=True)

    try:
        asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"steps": steps, **stretch.figures()}


# -- throughput ---------------------------------------------------------------------------------


def throughput(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    app, schema = new_app(url)
    finished: set[int] = set()

    @app.workflow("throughput", trigger=df.on_event("bench/throughput"))
    async def run_steps(event: df.Event, step: df.Step) -> int:
        for i in range(steps):
            await step.run("step", noop, i)
        finished.add(event.data["i"])
        return steps

    async def main() -> float:
        async with app:
            await enqueue(app, "bench/throughput", runs)  # all queued before the clock starts
            start = time.perf_counter()
            async with app.worker(concurrency=concurrency):
                await wait_until(lambda: len(finished) >= runs, 3600, 0.005)
                await wait_until(runs_reach(app, "throughput", "completed", runs), 600, 0.005)
                return time.perf_counter() - start

    try:
        seconds = asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"runs": runs, "steps_per_run": steps, "concurrency": concurrency, "seconds": seconds}


# -- event sent -> waiting run resumed ----------------------------------------------------------


def event(url: str, trials: int, gap: float) -> dict[str, Any]:
    app, schema = new_app(url)
    resumed: dict[int, float] = {}
    signals: dict[int, asyncio.Event] = {}

    @app.workflow("event", trigger=df.on_event("bench/wait"))
    async def wait(event: df.Event, step: df.Step) -> None:
        await step.wait_for_event("go", "bench/go", match="data.i", timeout="1h")
        i = event.data["i"]
        resumed.setdefault(i, time.perf_counter())
        signals[i].set()

    async def main() -> list[float]:
        for i in range(trials):
            signals[i] = asyncio.Event()
        async with app, app.worker():
            await enqueue(app, "bench/wait", trials)
            await wait_until(runs_reach(app, "event", "waiting", trials), 600, 0.05)
            latencies = []
            for i in range(trials):
                sent = time.perf_counter()
                await app.send("bench/go", {"i": i})
                await asyncio.wait_for(signals[i].wait(), 30)
                latencies.append(resumed[i] - sent)
                await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
            return latencies

    try:
        latencies = asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"latencies": latencies}


# -- lateness of 1 s sleeps ---------------------------------------------------------------------


def sleep(url: str, trials: int, gap: float) -> dict[str, Any]:
    app, schema = new_app(url)
    intended: dict[int, float] = {}
    resumed: dict[int, float] = {}

    @app.workflow("sleep", trigger=df.on_event("bench/sleep"))
    async def nap(event: df.Event, step: df.Step) -> None:
        i = event.data["i"]
        intended.setdefault(i, time.time() + 1.0)
        await step.sleep("nap", 1.0)
        resumed.setdefault(i, time.time())

    async def main() -> None:
        async with app, app.worker():
            for i in range(trials):  # staggered, so wake-ups do not queue behind each other
                await app.send("bench/sleep", {"i": i})
                await asyncio.sleep(gap)
            await wait_until(lambda: len(resumed) >= trials, 120, 0.05)

    try:
        asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"lateness": [resumed[i] - intended[i] for i in range(trials)]}


# -- memory with many runs suspended on events ----------------------------------------------------

#: Worker concurrency for the memory measure (runs executing at once, not runs held).
HOLD_CONCURRENCY = 20


def memory(url: str, count: int) -> dict[str, Any]:
    """A separate worker process takes ``count`` runs into ``wait_for_event``; then all are released.

    Its RSS is sampled throughout: idle, with every run suspended, and after all completed.
    """
    from bench.apps.hold_dataflows import make_app

    schema = f"bench_{secrets.token_hex(4)}"
    app = make_app(url, schema)
    runs = f"{schema}.runs"

    def status_count(status: str) -> int:
        return scalar(url, f"SELECT count(*) FROM {runs} WHERE status = '{status}'")

    async def main(sampler: RssSampler) -> dict[str, Any]:
        async with app:
            await asyncio.sleep(3)  # the worker has started and settled
            figures: dict[str, Any] = {"rss_idle_mb": sampler.now()}
            start = time.perf_counter()
            await enqueue(app, "bench/hold", count)
            await wait_until(lambda: status_count("waiting") >= count, 3600, 1.0)
            figures["suspend_s"] = time.perf_counter() - start
            await asyncio.sleep(3)
            figures["rss_suspended_mb"] = sampler.now()
            start = time.perf_counter()
            await enqueue(app, "bench/release", count)
            with contextlib.suppress(TimeoutError):  # counted below
                await wait_until(lambda: status_count("completed") >= count, 3600, 1.0)
            figures["resume_s"] = time.perf_counter() - start
            figures["resumed"] = status_count("completed")
            figures["rss_after_mb"] = sampler.now()
            return figures

    async def migrate() -> None:  # before the worker starts, so it finds its tables
        async with app:
            pass

    asyncio.run(migrate())
    worker = start_process(["-m", "bench.apps.hold_dataflows", url, schema, str(HOLD_CONCURRENCY)])
    sampler = RssSampler(worker.pid)
    try:
        figures = asyncio.run(main(sampler))
        figures["rss_peak_mb"] = sampler.peak
    finally:
        sampler.stop()
        stop_process(worker)
        _cleanup(url, schema)
    return {"count": count, "all_resumed": figures["resumed"] == count, **figures}


# -- failover -------------------------------------------------------------------------------------

FAILOVER_WORKERS = 3


def _written(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


def failover(url: str, kills: int) -> dict[str, Any]:
    """Three worker processes (30 s lease); ``kills`` times: start a run, SIGKILL the worker
    whose step holds it, and time from the kill to the moment another worker's step began
    (the run resumed elsewhere); then start a worker in place of the dead one."""
    from bench.apps.failover_dataflows import make_app

    schema = None if url.startswith("sqlite:") else f"bench_{secrets.token_hex(4)}"
    markers = Path(tempfile.mkdtemp(prefix="bench_failover_"))
    app = make_app(url, schema or "dataflows", markers)
    argv = ["-m", "bench.apps.failover_dataflows", url, schema or "dataflows", str(markers)]
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def spawn() -> None:
        proc = start_process(argv)
        workers[proc.pid] = proc

    async def all_registered() -> bool:
        return len(await app.store.list_workers()) == FAILOVER_WORKERS

    async def main() -> list[float]:
        taken_over: list[float] = []
        async with app:
            for _ in range(FAILOVER_WORKERS):
                spawn()
            for _ in range(kills):
                await wait_until(all_registered, 60, 0.05)
                run_id = await app.start("failover", {})
                marker = markers / f"held-{run_id}"
                await wait_until(functools.partial(_written, marker), 60, 0.005)
                holder = int(marker.read_text())
                killed_at = time.time()
                os.kill(holder, signal.SIGKILL)
                run = await app.wait_for_run(run_id, timeout=120, raise_on_failure=True)
                taken_over.append(run.result["resumed_at"] - killed_at)
                workers.pop(holder).wait()
                spawn()
        return taken_over

    async def migrate() -> None:  # before the workers start, so they find their tables
        async with app:
            pass

    asyncio.run(migrate())
    try:
        seconds = asyncio.run(main())
    finally:
        for proc in workers.values():
            stop_process(proc)
        shutil.rmtree(markers, ignore_errors=True)
        _cleanup(url, schema)
    return {"workers": FAILOVER_WORKERS, "lease_s": 30.0, "seconds": seconds}


# -- shared step budget -----------------------------------------------------------------------------

BUDGET_WORKERS = 2


def budget(url: str, calls: int, limit: int) -> dict[str, Any]:
    """``calls`` runs of one step each, its calls sharing ``app.rate_limit("api", limit=limit,
    period="1s")``, drained by two workers (two apps on the store, as two processes would be);
    every call's start time is recorded where the call lands, as an API would see it."""
    schema = None if url.startswith("sqlite:") else f"bench_{secrets.token_hex(4)}"
    landed: list[float] = []

    def call(i: int) -> int:
        landed.append(time.time())
        return i

    def make() -> df.Dataflows:
        app = df.Dataflows(url, schema=schema or "dataflows", retention=None)
        app.rate_limit("api", limit=limit, period="1s")

        @app.workflow("budget", trigger=df.on_event("bench/budget"))
        async def one_call(event: df.Event, step: df.Step) -> int:
            done: int = await step.run("call", call, event.data["i"], rate_limit="api")
            return done

        return app

    apps = [make() for _ in range(BUDGET_WORKERS)]

    async def main() -> float:
        async with contextlib.AsyncExitStack() as stack:
            for app in apps:
                await stack.enter_async_context(app)
            await enqueue(apps[0], "bench/budget", calls)
            start = time.perf_counter()
            for app in apps:
                await stack.enter_async_context(app.worker(concurrency=64))
            await wait_until(lambda: len(landed) >= calls, 3600, 0.01)
            await wait_until(runs_reach(apps[0], "budget", "completed", calls), 600, 0.01)
            return time.perf_counter() - start

    try:
        seconds = asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"calls": calls, "limit": limit, "period_s": 1.0, "seconds": seconds, "landed": landed}


# -- throughput under a concurrency limit ---------------------------------------------------------


def limited(
    url: str, runs: int, steps: int, concurrency: int, keys: int, limit: int
) -> dict[str, Any]:
    """The throughput measure twice in one process, on fresh schemas: the workflow without a
    limit, then with ``Concurrency(limit, key="data.k")`` over ``keys`` keys (run i has key
    i % keys); the worker's concurrency is the same for both."""

    def once(concurrency_limit: df.Concurrency | None) -> float:
        app, schema = new_app(url)
        finished: set[int] = set()

        @app.workflow(
            "limited", trigger=df.on_event("bench/limited"), concurrency=concurrency_limit
        )
        async def run_steps(event: df.Event, step: df.Step) -> int:
            for i in range(steps):
                await step.run("step", noop, i)
            finished.add(event.data["i"])
            return steps

        async def main() -> float:
            async with app:
                for first in range(0, runs, BATCH):
                    batch = range(first, min(first + BATCH, runs))
                    await app.send_many(
                        [("bench/limited", {"i": i, "k": i % keys}, None) for i in batch]
                    )
                start = time.perf_counter()
                async with app.worker(concurrency=concurrency):
                    await wait_until(lambda: len(finished) >= runs, 3600, 0.005)
                    await wait_until(runs_reach(app, "limited", "completed", runs), 600, 0.005)
                    return time.perf_counter() - start

        try:
            return asyncio.run(main())
        finally:
            _cleanup(url, schema)

    unlimited_s = once(None)
    limited_s = once(df.Concurrency(limit=limit, key="data.k"))
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "keys": keys,
        "limit": limit,
        "unlimited_seconds": unlimited_s,
        "limited_seconds": limited_s,
    }


# -- starts -----------------------------------------------------------------------------------------


def starts(url: str, starts: int, callers: int) -> dict[str, Any]:
    """``starts`` runs started by ``callers`` concurrent ``app.start`` calls; no worker runs.

    Timed from the first call to the last return (after one untimed start that opens the pool);
    one latency per call.
    """
    app, schema = new_app(url)

    @app.workflow("starts")
    async def trivial(event: df.Event, step: df.Step) -> None:
        return None

    async def main() -> tuple[float, list[float]]:
        latencies: list[float] = []
        left = iter(range(starts))

        async def caller() -> None:
            for i in left:
                began = time.perf_counter()
                await app.start("starts", {"i": i})
                latencies.append(time.perf_counter() - began)

        async with app:
            await app.start("starts", {"i": -1})  # opens the pool, untimed
            began = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(callers)))
            return time.perf_counter() - began, latencies

    try:
        seconds, latencies = asyncio.run(main())
    finally:
        _cleanup(url, schema)
    return {"starts": starts, "callers": callers, "seconds": seconds, "latencies": latencies}


# -- two worker processes -----------------------------------------------------------------------------


def two_workers(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """Throughput drained by one worker process (``python -m bench.apps.two_workers_dataflows``,
    ``app.run_worker(concurrency)``), then on a fresh schema (SQLite: a fresh file) by two.

    The processes are started first and waited for until registered (``app.store.list_workers()``);
    then the runs are sent (``send_many``, 500 a transaction) and the clock runs from before the
    first send to the moment no run is left unfinished (``app.store.run_counts()``, polled)."""
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "one_seconds": _drain_by_processes(url, runs, steps, concurrency, 1, "one"),
        "two_seconds": _drain_by_processes(url, runs, steps, concurrency, 2, "two"),
    }


def _drain_by_processes(
    url: str, runs: int, steps: int, concurrency: int, processes: int, tag: str
) -> float:
    from bench.apps.two_workers_dataflows import make_app

    if url.startswith("sqlite:"):
        url, schema = f"{url.removesuffix('.db')}_{tag}.db", None
    else:
        schema = f"bench_{secrets.token_hex(4)}"
    app = make_app(url, schema or "dataflows")
    argv = ["-m", "bench.apps.two_workers_dataflows", url, schema or "dataflows", str(concurrency)]
    workers: list[subprocess.Popen[bytes]] = []

    async def registered() -> bool:
        return len(await app.store.list_workers()) >= processes

    async def unfinished() -> int:
        return sum(
            n for workflow, _, n in await app.store.run_counts() if workflow == "two_workers"
        )

    async def main() -> float:
        async with app:  # migrates before the workers start, so they find their tables
            workers.extend(start_process(argv) for _ in range(processes))
            await wait_until(registered, 120, 0.05)
            began = time.perf_counter()
            for first in range(0, runs, BATCH):
                batch = range(first, min(first + BATCH, runs))
                await app.send_many(
                    [("bench/two_workers", {"i": i, "steps": steps}, None) for i in batch]
                )
            await wait_until(lambda: _none_left(unfinished), 3600, 0.01)
            seconds = time.perf_counter() - began
            completed = await app.list_runs(
                workflow_id="two_workers", status="completed", limit=runs
            )
            if len(completed) != runs:
                raise RuntimeError(f"{len(completed)} of {runs} runs completed")
            return seconds

    try:
        return asyncio.run(main())
    finally:
        for proc in workers:
            stop_process(proc)
        _cleanup(url, schema)


async def _none_left(unfinished: Callable[[], Awaitable[int]]) -> bool:
    return await unfinished() == 0


# -- mixed: starts while the same process's worker executes -------------------------------------


def mixed(url: str, runs: int, steps: int, concurrency: int, callers: int) -> dict[str, Any]:
    """The throughput measure (all ``runs`` queued first, then drained), then on a fresh schema
    the same runs started by ``callers`` concurrent ``app.start`` callers while the worker of
    the same process, already running, executes them: timed from the first start to the last
    run complete."""

    def make() -> tuple[df.Dataflows, str | None, set[int]]:
        app, schema = new_app(url)
        finished: set[int] = set()

        @app.workflow("mixed")
        async def run_steps(event: df.Event, step: df.Step) -> int:
            for i in range(steps):
                await step.run("step", noop, i)
            finished.add(event.data["i"])
            return steps

        return app, schema, finished

    async def drain(app: df.Dataflows, finished: set[int]) -> float:
        async with app:
            for first in range(0, runs, BATCH):
                await asyncio.gather(
                    *(app.start("mixed", {"i": i}) for i in range(first, min(first + BATCH, runs)))
                )
            start = time.perf_counter()
            async with app.worker(concurrency=concurrency):
                await wait_until(lambda: len(finished) >= runs, 3600, 0.005)
                await wait_until(runs_reach(app, "mixed", "completed", runs), 600, 0.005)
                return time.perf_counter() - start

    async def started_while_running(
        app: df.Dataflows, finished: set[int], latencies: list[float]
    ) -> float:
        todo = iter(range(runs))

        async def caller() -> None:
            for i in todo:  # shared: each run is started by whichever caller is free
                began = time.perf_counter()
                await app.start("mixed", {"i": i})
                latencies.append(time.perf_counter() - began)

        async with app, app.worker(concurrency=concurrency):
            await asyncio.sleep(0.5)  # the worker has registered and is polling
            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(callers)))
            await wait_until(lambda: len(finished) >= runs, 3600, 0.005)
            await wait_until(runs_reach(app, "mixed", "completed", runs), 600, 0.005)
            return time.perf_counter() - start

    app, schema, finished = make()
    try:
        drain_s = asyncio.run(drain(app, finished))
    finally:
        _cleanup(url, schema)
    app, schema, finished = make()
    latencies: list[float] = []
    try:
        mixed_s = asyncio.run(started_while_running(app, finished, latencies))
    finally:
        _cleanup(url, schema)
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "callers": callers,
        "drain_seconds": drain_s,
        "mixed_seconds": mixed_s,
        "start_latencies": latencies,
        "drain_steps_per_s": runs * steps / drain_s,
        "mixed_steps_per_s": runs * steps / mixed_s,
    }


# -- event sent -> run resumed in a worker of another process ----------------------------------------


def event_remote(url: str, trials: int, gap: float) -> dict[str, Any]:
    """The event measure with the worker in another process (``bench.apps.event_dataflows``):
    this process is a plain client (no worker) that sends each event with ``app.send``; the code
    after the wait, in the worker, writes its ``time.time()`` to a FIFO this process reads.
    latency = resumed_at - sent_at (``time.time()`` just before the send)."""
    from bench.apps.event_dataflows import make_app

    schema = None if url.startswith("sqlite:") else f"bench_{secrets.token_hex(4)}"
    app = make_app(url, schema or "dataflows")
    workdir = Path(tempfile.mkdtemp(prefix="bench_event_"))
    fifo_path = workdir / "resumed"
    os.mkfifo(fifo_path)
    reader = os.open(fifo_path, os.O_RDONLY | os.O_NONBLOCK)  # before the worker opens it
    lines: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    pending = b""

    def readable() -> None:
        nonlocal pending
        with contextlib.suppress(BlockingIOError):
            pending += os.read(reader, 65536)
        *complete, pending = pending.split(b"\n")
        for line in complete:
            i, resumed = line.split()
            lines.put_nowait((int(i), float(resumed)))

    async def waiting() -> bool:
        runs = await app.list_runs(workflow_id="event_remote", status="waiting", limit=trials)
        return len(runs) >= trials

    async def main() -> list[float]:
        asyncio.get_running_loop().add_reader(reader, readable)
        async with app:
            await enqueue(app, "bench/wait", trials)
            await wait_until(waiting, 600, 0.05)
            await asyncio.sleep(0.5)  # the worker settles (its suspends and claim rounds end)
            latencies = []
            for i in range(trials):
                sent = time.time()
                await app.send("bench/go", {"i": i})
                got, resumed = await asyncio.wait_for(lines.get(), 30)
                assert got == i, (got, i)
                latencies.append(resumed - sent)
                await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
            return latencies

    async def migrate() -> None:  # before the worker starts, so it finds its tables
        async with app:
            pass

    asyncio.run(migrate())
    argv = ["-m", "bench.apps.event_dataflows", url, schema or "dataflows", str(fifo_path)]
    worker = start_process(argv)
    try:
        latencies = asyncio.run(main())
    finally:
        stop_process(worker)
        os.close(reader)
        shutil.rmtree(workdir, ignore_errors=True)
        _cleanup(url, schema)
    return {"latencies": latencies}
