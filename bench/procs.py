"""Worker processes the harness starts, and their resident memory."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's RSS a few times a second in a thread, keeping the peak."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.peak = 0.0
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def now(self) -> float:
        value = rss_mb(self.pid)
        self.peak = max(self.peak, value)
        return value

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.now()
            except (OSError, RuntimeError):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def start_process(
    argv: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m ...`` style commands from the repository root, output to our stderr."""
    return subprocess.Popen(
        [sys.executable, *argv] if argv[0] == "-m" else list(argv),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=sys.stderr,
        stderr=sys.stderr,
        start_new_session=True,  # so stop_process can signal its children too
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """SIGTERM this process when the one that started it dies (say, killed on a timeout):
    a dataflows worker retries a vanished database forever, so an orphan would never exit."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_alive(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Sleep ``seconds``, failing early if the process died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker process exited with {proc.returncode}")
        time.sleep(0.1)
