"""Run a worker in a child process and start a fresh one whenever it recycles itself.

The child is in its own process group, so a Ctrl-C in the terminal reaches it once, through
the supervisor: each SIGINT/SIGTERM the supervisor gets is forwarded (the second one makes the
child exit at once). A child that crashes is restarted after a pause that grows while it keeps
crashing; the supervisor exits when the child exits after a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from types import FrameType

from dataflows.runner import RECYCLED, SIGNALS
from dataflows.worker import Worker

log = logging.getLogger("dataflows.cli")

#: Tells a child worker which process supervises it, so it stops if that process dies.
SUPERVISOR_ENV = "DATAFLOWS_SUPERVISOR_PID"
#: A child that ran this long before crashing is restarted at once, without backoff.
STABLE_SECONDS = 60.0


class Supervisor:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.started = 0

    def run(self) -> int:
        """Supervise until a signal stops the child; the exit code to leave with."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        try:
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> int:
        backoff = 1.0
        while not self.stopping:
            began = time.monotonic()
            child = self._start()
            code = child.wait()
            if self.stopping:
                return _code_after_stop(code)
            if code == RECYCLED:
                log.info("worker process %d recycled itself; starting a fresh one", child.pid)
                backoff = 1.0
                continue
            if time.monotonic() - began >= STABLE_SECONDS:
                backoff = 1.0
            log.error(
                "worker process %d %s; restarting in %gs", child.pid, _describe(code), backoff
            )
            self._pause(backoff)
            backoff = min(backoff * 2, 30.0)
        return 0

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        self.child = child = subprocess.Popen(self.argv, env=env, process_group=0)
        self.started += 1
        if self.stopping:  # a signal arrived while it was being started
            self._forward(signal.SIGTERM)
        log.info("supervisor %d: started worker process %d", os.getpid(), child.pid)
        return child

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)


def _code_after_stop(code: int) -> int:
    """A child that stopped because of the forwarded signal stopped cleanly."""
    if code in (0, RECYCLED) or -code in SIGNALS:
        return 0
    return code if code >= 0 else 128 - code


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


async def watch_supervisor(worker: Worker) -> None:
    """In a supervised child: stop the worker if the supervising process died (a child must not
    outlive it unnoticed)."""
    pid = int(os.environ[SUPERVISOR_ENV])
    while True:  # no event tells a process its parent died; polling getppid is the way
        await asyncio.sleep(1.0)
        if os.getppid() != pid:
            break
    log.warning("the supervisor (pid %d) is gone; stopping", pid)
    worker.request_stop()
