"""Running a worker in this process until a signal, a recycle, or a supervisor that went away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from dataflows.app import Dataflows
from dataflows.cli.progress import Progress
from dataflows.cli.supervisor import RECYCLED, SUPERVISOR_ENV
from dataflows.errors import StoreUnavailable
from dataflows.worker import Worker, WorkerOptions, step_threads_left

log = logging.getLogger("dataflows.cli")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_in_process(app: Dataflows, options: WorkerOptions, status_interval: float = 10.0) -> int:
    """Run a worker in this process; 0, or 3 when it recycled itself."""
    code = asyncio.run(serve(app, options, status_interval))
    if step_threads_left(timeout=1.0):
        # A sync step function outlived the grace period; its run was handed back already.
        logging.shutdown()
        os._exit(code)
    return code


async def serve(app: Dataflows, options: WorkerOptions, status_interval: float) -> int:
    worker = Worker(app, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: exiting now", sig.name)
            logging.shutdown()
            os._exit(130)
        log.info(
            "%s: stopping; in-flight steps get up to %gs to finish (signal again to exit now)",
            sig.name,
            options.shutdown_grace,
        )
        stop.set()
        worker.request_stop()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    helpers: list[asyncio.Task[None]] = []
    try:
        if not await start(worker, stop):
            return 0
        if status_interval > 0:
            helpers.append(asyncio.create_task(Progress(worker, status_interval).run()))
        supervisor = os.environ.get(SUPERVISOR_ENV)
        if supervisor is not None:
            helpers.append(asyncio.create_task(_watch_supervisor(int(supervisor), worker)))
        await worker.wait_stopped()
        if worker.recycled and not stop.is_set():
            log.info("worker recycling after %d runs; handing over", worker.finished_runs)
        await worker.stop()
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await app.close()
    return RECYCLED if worker.recycled and not stop.is_set() else 0


async def start(worker: Worker, stop: asyncio.Event) -> bool:
    """Start the worker, waiting out a database that is not there yet; False if stopped first."""
    delay = 0.5
    while not stop.is_set():
        try:
            await worker.start()
            return True
        except StoreUnavailable as exc:
            log.warning("database unreachable, retrying in %gs: %s", delay, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return False


async def _watch_supervisor(pid: int, worker: Worker) -> None:
    """Stop if the supervising process died (a child must not outlive it unnoticed)."""
    while True:  # no event tells a process its parent died; polling getppid is the way
        await asyncio.sleep(1.0)
        if os.getppid() != pid:
            break
    log.warning("the supervisor (pid %d) is gone; stopping", pid)
    worker.request_stop()
