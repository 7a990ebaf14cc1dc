"""Running in the foreground until SIGTERM or SIGINT: the one owner of signals and graceful shutdown.

The first signal stops gracefully: a worker claims nothing more, its in-flight steps get the
grace period to finish and the runs it still holds are released; a server stops accepting and
finishes its requests. A second signal exits at once (code 130): runs still held are recovered by
another worker once their leases expire. ``app.run_worker()``, ``dataflows worker``, ``dataflows
serve`` and ``dataflows dev`` all stop this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

from dataflows.errors import StoreUnavailable
from dataflows.outage import STORE_OUTAGE
from dataflows.worker import Worker, WorkerApp, WorkerOptions, step_threads_left

log = logging.getLogger("dataflows.runner")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: The exit code of a worker that recycled itself (``max_runs`` / ``max_rss_mb``): a supervisor
#: starts a fresh one.
RECYCLED = 3
#: The exit code after a second signal.
EXIT_NOW = 130

#: Something that runs beside a worker until the worker stops (status lines, a watchdog).
Helper = Callable[[Worker], Coroutine[Any, Any, None]]


def exit_now(sig: signal.Signals) -> None:
    """The second signal: leave at once, without waiting for anything."""
    log.warning("%s again: exiting now", sig.name)
    logging.shutdown()
    os._exit(EXIT_NOW)


class StopSignals:
    """SIGTERM and SIGINT handlers on the running loop, installed while the block runs.

    The first signal logs ``announce`` (``%s`` is the signal's name), sets :attr:`requested` and
    calls ``stop``; every later one calls ``again`` (by default: :func:`exit_now`).
    """

    def __init__(
        self,
        announce: str,
        stop: Callable[[], None] = lambda: None,
        again: Callable[[signal.Signals], None] = exit_now,
    ) -> None:
        self.announce = announce
        self.stop = stop
        self.again = again
        self.requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            self.again(sig)
            return
        log.info(self.announce, sig.name)
        self.requested.set()
        self.stop()

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)


def run_worker(
    app: WorkerApp,
    options: WorkerOptions,
    *,
    helpers: Sequence[Helper] = (),
    wait_for_store: bool = False,
) -> int:
    """Run a worker in this process until a signal or a recycle; then close ``app``.

    Returns 0, or :data:`RECYCLED` when the worker recycled itself. ``helpers`` run beside the
    worker; with ``wait_for_store`` a database that cannot be reached yet is waited for instead
    of raising. If a sync step function is still running when the grace period ends, its run has
    been handed back already and the process exits with the code at once (``os._exit``): Python
    would otherwise wait at exit for the thread, which cannot be interrupted.
    """
    code = asyncio.run(serve_worker(app, options, helpers=helpers, wait_for_store=wait_for_store))
    if step_threads_left(timeout=1.0):
        logging.shutdown()
        os._exit(code)
    return code


async def serve_worker(
    app: WorkerApp,
    options: WorkerOptions,
    *,
    helpers: Sequence[Helper] = (),
    wait_for_store: bool = False,
) -> int:
    """:func:`run_worker` in the running loop."""
    worker = Worker(app, options)
    announce = (
        f"%s: stopping; in-flight steps get up to {options.shutdown_grace:g}s to finish "
        "(signal again to exit now)"
    )
    tasks: list[asyncio.Task[None]] = []
    with StopSignals(announce, worker.request_stop) as signals:
        try:
            if not await _start(worker, signals.requested, wait_for_store):
                return 0
            tasks = [asyncio.create_task(helper(worker)) for helper in helpers]
            await worker.wait_stopped()
            if worker.recycled and not signals.requested.is_set():
                log.info("worker recycling after %d runs; handing over", worker.finished_runs)
            await worker.stop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.close()
    return RECYCLED if worker.recycled and not signals.requested.is_set() else 0


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Starting leaves about 1 MiB of it free in holes the process may not fill again:
    the compiler's scratch space for the methods dataclasses generate, module files read whole.
    Called once a worker has started, in a process that runs it until the end."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return
    trim(0)


async def _start(worker: Worker, stop: asyncio.Event, wait_for_store: bool) -> bool:
    """Start the worker (waiting out a database that is not there yet, when asked to); False if
    a signal came first."""
    delay = 0.5
    while not stop.is_set():
        try:
            await worker.start()
            STORE_OUTAGE.available()
            release_free_memory()
            return True
        except StoreUnavailable as exc:
            if not wait_for_store:
                raise
            STORE_OUTAGE.unavailable(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return False
