"""DBOS Transact under each measure, configured as its docs recommend.

Workflows are plain (sync) ``@DBOS.workflow()`` functions calling ``@DBOS.step()`` functions — the
documented default style; DBOS runs each workflow in a thread of its executor. Each measure uses a
fresh system schema (``dbos_system_schema``) on PostgreSQL, or the fresh SQLite file the harness
passes. Throughput drains a database-backed queue (``DBOS.register_queue``), DBOS's way for a
worker process to take enqueued work.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions, Queue, SendMessage

from bench.cpu import Stretch
from bench.dbs import drop_schema, scalar
from bench.procs import RssSampler, start_process, stop_process, wait_alive

#: The queue's polling interval. DBOS polls its queues (1 s by default, no wake-up on enqueue);
#: 0.05 s keeps polling from capping throughput at small worker concurrencies.
QUEUE_POLL = 0.05

FINISHED: set[int] = set()
#: Times the sequential run (set by sequential(), started and stopped by the workflow).
STRETCH: Stretch | None = None
READY: set[int] = set()
RESUMED: dict[int, float] = {}
INTENDED: dict[int, float] = {}
SIGNALS: dict[int, threading.Event] = {}


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def sequential_wf(steps: int) -> int:
    assert STRETCH is not None
    STRETCH.start()
    for i in range(steps):
        noop(i)
    STRETCH.stop()
    return steps


@DBOS.workflow()
def throughput_wf(i: int, steps: int) -> int:
    for n in range(steps):
        noop(n)
    FINISHED.add(i)
    return steps


@DBOS.workflow()
def event_wf(i: int) -> None:
    READY.add(i)
    DBOS.recv("go", timeout_seconds=3600)
    RESUMED.setdefault(i, time.perf_counter())
    SIGNALS[i].set()


@DBOS.workflow()
def sleep_wf(i: int) -> None:
    INTENDED.setdefault(i, time.time() + 1.0)
    DBOS.sleep(1.0)
    RESUMED.setdefault(i, time.time())


def launch(url: str) -> str | None:
    """Configure and launch DBOS on ``url`` with a fresh system schema; returns the schema."""
    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    schema = None
    if not url.startswith("sqlite:"):
        schema = f"dbos_{secrets.token_hex(4)}"
        config["dbos_system_schema"] = schema
    DBOS(config=config)
    DBOS.launch()
    return schema


def shutdown(url: str, schema: str | None) -> None:
    DBOS.destroy(destroy_registry=False)
    if schema is not None:
        drop_schema(url, schema)


def wait_until(check: Callable[[], bool], timeout: float, every: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached within {timeout}s")
        time.sleep(every)


def succeeded(queue: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        done = DBOS.list_workflows(
            status="SUCCESS", queue_name=queue, load_input=False, load_output=False
        )
        return len(done) >= count

    return check


def sequential(url: str, steps: int) -> dict[str, Any]:
    global STRETCH
    STRETCH = Stretch(server=not url.startswith("sqlite:"))
    schema = launch(url)
    try:
        sequential_wf(steps)
    finally:
        shutdown(url, schema)
    return {"steps": steps, **STRETCH.figures()}


def throughput(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` is the queue's ``worker_concurrency``; 0 means unlimited (DBOS's default)."""
    schema = launch(url)
    try:
        # Registered paused (worker_concurrency 0) so every run is enqueued before the clock starts.
        queue: Queue = DBOS.register_queue(
            "bench", worker_concurrency=0, polling_interval_sec=QUEUE_POLL
        )
        for i in range(runs):
            DBOS.enqueue_workflow("bench", throughput_wf, i, steps)
        # DBOS's queue manager starts a queue's polling thread within a second of registration.
        wait_until(
            lambda: any(t.name == "queue-worker-bench" for t in threading.enumerate()), 30, 0.01
        )
        start = time.perf_counter()
        queue.set_worker_concurrency(concurrency or None)
        wait_until(lambda: len(FINISHED) >= runs, 3600, 0.005)
        wait_until(succeeded("bench", runs), 600, 0.005)
        seconds = time.perf_counter() - start
    finally:
        shutdown(url, schema)
    return {"runs": runs, "steps_per_run": steps, "concurrency": concurrency, "seconds": seconds}


def event(url: str, trials: int, gap: float) -> dict[str, Any]:
    """Workflows block in ``DBOS.recv``; ``DBOS.send`` to each in turn, timed until it resumes."""
    for i in range(trials):
        SIGNALS[i] = threading.Event()
    schema = launch(url)
    try:
        handles = [DBOS.start_workflow(event_wf, i) for i in range(trials)]
        wait_until(lambda: len(READY) >= trials, 600, 0.05)
        time.sleep(1.0)  # each has reached recv() (a message sent earlier waits for it anyway)
        latencies = []
        for i, handle in enumerate(handles):
            sent = time.perf_counter()
            DBOS.send(handle.workflow_id, "go", topic="go")
            if not SIGNALS[i].wait(30):
                raise TimeoutError(f"workflow {i} did not resume")
            latencies.append(RESUMED[i] - sent)
            time.sleep(random.uniform(0, 2 * gap))  # random phase against any polling
    finally:
        shutdown(url, schema)
    return {"latencies": latencies}


def sleep(url: str, trials: int, gap: float) -> dict[str, Any]:
    schema = launch(url)
    try:
        for i in range(trials):
            DBOS.start_workflow(sleep_wf, i)
            time.sleep(gap)
        wait_until(lambda: len(RESUMED) >= trials, 120, 0.05)
    finally:
        shutdown(url, schema)
    return {"lateness": [RESUMED[i] - INTENDED[i] for i in range(trials)]}


def memory(url: str, count: int) -> dict[str, Any]:
    """A separate DBOS process takes ``count`` workflows into ``recv``; then all are released."""
    schema = f"dbos_{secrets.token_hex(4)}"
    worker = start_process(["-m", "bench.apps.hold_dbos", url, schema])
    sampler = RssSampler(worker.pid)
    client: DBOSClient | None = None
    try:
        wait_until(
            lambda: _count(url, f"SELECT count(*) FROM {schema}.queues WHERE name = 'hold'") > 0,
            120,
            0.5,
        )
        wait_alive(worker, 3)
        figures: dict[str, Any] = {"rss_idle_mb": sampler.now()}
        client = DBOSClient(system_database_url=url, dbos_system_schema=schema)
        options: EnqueueOptions = {"queue_name": "hold", "workflow_name": "hold_wf"}
        start = time.perf_counter()
        ids = [client.enqueue(options, i).get_workflow_id() for i in range(count)]
        ready = f"SELECT count(*) FROM {schema}.operation_outputs WHERE function_name = 'ready'"
        wait_until(lambda: _count(url, ready) >= count, 3600, 1.0)
        figures["suspend_s"] = time.perf_counter() - start
        wait_alive(worker, 3)
        figures["rss_suspended_mb"] = sampler.now()
        start = time.perf_counter()
        for first in range(0, count, 500):
            client.send_bulk([SendMessage(id, "go", "release") for id in ids[first : first + 500]])
        done = f"SELECT count(*) FROM {schema}.workflow_status WHERE status = 'SUCCESS'"
        with contextlib.suppress(TimeoutError):  # counted below
            wait_until(lambda: _count(url, done) >= count, 3600, 1.0)
        figures["resume_s"] = time.perf_counter() - start
        figures["resumed"] = _count(url, done)
        figures["rss_after_mb"] = sampler.now()
        figures["rss_peak_mb"] = sampler.peak
    finally:
        sampler.stop()
        if client is not None:
            client.destroy()
        stop_process(worker)
        drop_schema(url, schema)
    return {"count": count, "all_resumed": figures["resumed"] == count, **figures}


def _count(url: str, query: str) -> int:
    try:
        return scalar(url, query)
    except psycopg.Error:  # the schema does not exist yet
        return 0
