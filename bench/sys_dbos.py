"""DBOS Transact under each measure, configured as its docs recommend.

Workflows are plain (sync) ``@DBOS.workflow()`` functions calling ``@DBOS.step()`` functions — the
documented default style; DBOS runs each workflow in a thread of its executor. Each measure uses a
fresh system schema (``dbos_system_schema``) on PostgreSQL, or the fresh SQLite file the harness
passes. Throughput drains a database-backed queue (``DBOS.register_queue``), DBOS's way for a
worker process to take enqueued work.

Starts enqueue on a queue registered paused (nothing executes), from threads; mixed drains a
queue and then enqueues into a running one from threads of the same process; event_remote and
two_workers run the workflows in worker processes (``python -m bench.apps.remote_dbos``) and
drive them with a ``DBOSClient`` (``enqueue``, ``send``, the queue's worker concurrency).
"""

from __future__ import annotations

import contextlib
import random
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
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
def trivial_wf(i: int) -> int:
    return i


MIXED_FINISHED: set[int] = set()


@DBOS.workflow()
def mixed_wf(i: int, steps: int) -> int:
    for n in range(steps):
        noop(n)
    MIXED_FINISHED.add(i)
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


def _queue_thread(name: str) -> Callable[[], bool]:
    """DBOS's queue manager starts a queue's polling thread within a second of registration."""
    return lambda: any(t.name == f"queue-worker-{name}" for t in threading.enumerate())


def _callers(callers: int, count: int, call: Callable[[int], object]) -> tuple[float, list[float]]:
    """``count`` calls by ``callers`` threads as fast as they go: (wall seconds, latencies)."""
    latencies: list[float] = []
    left = iter(range(count))
    lock = threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                i = next(left, None)
            if i is None:
                return
            began = time.perf_counter()
            call(i)
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began, latencies


# -- starts ---------------------------------------------------------------------------------------


def starts(url: str, starts: int, callers: int) -> dict[str, Any]:
    """``starts`` workflows enqueued by ``callers`` threads (``DBOS.enqueue_workflow``) on a queue
    registered paused (``worker_concurrency=0``), so nothing executes them: DBOS's start for a
    worker to take, without the worker. One untimed enqueue first."""
    schema = launch(url)
    try:
        DBOS.register_queue("starts", worker_concurrency=0, polling_interval_sec=QUEUE_POLL)
        DBOS.enqueue_workflow("starts", trivial_wf, -1)
        seconds, latencies = _callers(
            callers, starts, lambda i: DBOS.enqueue_workflow("starts", trivial_wf, i)
        )
    finally:
        shutdown(url, schema)
    return {"starts": starts, "callers": callers, "seconds": seconds, "latencies": latencies}


# -- mixed ----------------------------------------------------------------------------------------


def mixed(url: str, runs: int, steps: int, concurrency: int, callers: int) -> dict[str, Any]:
    """One DBOS process, two fresh queues of ``worker_concurrency=concurrency``: (a) ``drain``
    registered paused, all runs enqueued, then opened (the throughput measure); (b) ``mixed``
    running while ``callers`` threads of the same process enqueue the runs; timed from the first
    enqueue until every run succeeded."""
    schema = launch(url)
    try:
        drain = DBOS.register_queue("drain", worker_concurrency=0, polling_interval_sec=QUEUE_POLL)
        for i in range(runs):
            DBOS.enqueue_workflow("drain", throughput_wf, i, steps)
        wait_until(_queue_thread("drain"), 30, 0.01)
        began = time.perf_counter()
        drain.set_worker_concurrency(concurrency or None)
        wait_until(lambda: len(FINISHED) >= runs, 3600, 0.005)
        wait_until(succeeded("drain", runs), 600, 0.005)
        drain_seconds = time.perf_counter() - began

        DBOS.register_queue(
            "mixed", worker_concurrency=concurrency or None, polling_interval_sec=QUEUE_POLL
        )
        wait_until(_queue_thread("mixed"), 30, 0.01)
        began = time.perf_counter()
        _, latencies = _callers(
            callers, runs, lambda i: DBOS.enqueue_workflow("mixed", mixed_wf, i, steps)
        )
        wait_until(lambda: len(MIXED_FINISHED) >= runs, 3600, 0.005)
        wait_until(succeeded("mixed", runs), 600, 0.005)
        mixed_seconds = time.perf_counter() - began
    finally:
        shutdown(url, schema)
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
    """Worker processes (``python -m bench.apps.remote_dbos``) on a fresh system schema, and a
    ``DBOSClient`` to drive them; the first is started alone (it migrates the schema)."""

    def __init__(self, url: str, processes: int) -> None:
        self.url = url
        self.schema = f"dbos_{secrets.token_hex(4)}"
        self.markers = Path(tempfile.mkdtemp(prefix="bench_dbos_"))
        self.workers: list[subprocess.Popen[bytes]] = []
        self.client: DBOSClient | None = None
        try:
            for n in range(1, processes + 1):
                self.workers.append(
                    start_process(
                        ["-m", "bench.apps.remote_dbos", url, self.schema, str(self.markers)]
                    )
                )
                wait_until(lambda n=n: self._ready() >= n, 120, 0.05)  # type: ignore[misc]
            self.client = DBOSClient(system_database_url=url, dbos_system_schema=self.schema)
        except BaseException:
            self.close()
            raise

    def _ready(self) -> int:
        for proc in self.workers:
            if proc.poll() is not None:
                raise RuntimeError(f"DBOS worker process exited with {proc.returncode}")
        return len(list(self.markers.glob("ready-*")))

    def close(self) -> None:
        if self.client is not None:
            self.client.destroy()
        for proc in self.workers:
            stop_process(proc)
        shutil.rmtree(self.markers, ignore_errors=True)
        drop_schema(self.url, self.schema)


def event_remote(url: str, trials: int, gap: float) -> dict[str, Any]:
    """Workflows in a worker process block in ``DBOS.recv``; the bench process sends to each in
    turn with ``DBOSClient.send``; the worker writes ``time.time()`` when the code after the wait
    runs. Latency = that - ``time.time()`` just before the send."""
    remote = Remote(url, 1)
    try:
        assert remote.client is not None
        options: EnqueueOptions = {"queue_name": "remote", "workflow_name": "remote_wf"}
        ids = [remote.client.enqueue(options, i).get_workflow_id() for i in range(trials)]
        ready = (
            f"SELECT count(*) FROM {remote.schema}.operation_outputs WHERE function_name = 'ready'"
        )
        wait_until(lambda: _count(url, ready) >= trials, 600, 0.05)
        time.sleep(1.0)  # each has reached recv() (a message sent earlier waits for it anyway)
        latencies = []
        for i, workflow_id in enumerate(ids):
            marker = remote.markers / f"resumed-{i}"
            sent = time.time()
            remote.client.send(workflow_id, "go", topic="go")
            wait_until(marker.exists, 30, 0.001)
            latencies.append(float(marker.read_text()) - sent)
            time.sleep(random.uniform(0, 2 * gap))  # random phase against any polling
    finally:
        remote.close()
    return {"latencies": latencies}


def two_workers(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """The ``tw`` queue drained by one worker process, then (fresh schema) by two, each with
    ``worker_concurrency=concurrency`` (DBOS's limit per process). Every run is enqueued with a
    ``DBOSClient`` while the queue is paused; timed from setting its worker concurrency (the
    go) until every run succeeded."""

    def drain(processes: int) -> float:
        remote = Remote(url, processes)
        try:
            assert remote.client is not None
            options: EnqueueOptions = {"queue_name": "tw", "workflow_name": "tw_wf"}
            for i in range(runs):
                remote.client.enqueue(options, i, steps)
            queue = remote.client.retrieve_queue("tw")
            assert queue is not None
            done = (
                f"SELECT count(*) FROM {remote.schema}.workflow_status "
                "WHERE status = 'SUCCESS' AND queue_name = 'tw'"
            )
            with psycopg.connect(url, autocommit=True) as conn:  # one, not one per poll

                def succeeded() -> bool:
                    row = conn.execute(done.encode()).fetchone()
                    return row is not None and int(row[0]) >= runs

                began = time.perf_counter()
                queue.set_worker_concurrency(concurrency or None)
                wait_until(succeeded, 3600, 0.01)
                return time.perf_counter() - began
        finally:
            remote.close()

    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "one_seconds": drain(1),
        "two_seconds": drain(2),
    }
