"""End-to-end harness: the example app served by real `dataflows` processes, its stand-in APIs.

Every process runs in its own session and is killed (its whole process group) and reaped when
the test ends, whatever happened; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from examples.clickup.standins import StandIns

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = "examples/clickup/app.py"
API_KEY = "e2e-api-key"
SECRETS = {
    "DATAFLOWS_AZURE_DEVOPS_SECRET": "azure-hook:e2e-azure-password",
    "DATAFLOWS_SHOPIFY_SECRET": "e2e-shopify-secret",
}
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A `dataflows` command in its own session; its output goes to a log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def started(self) -> bool:
        """Whether a worker has logged that it started."""
        assert self.alive(), f"{self.name} exited:\n{self.output()}"
        return "started (concurrency" in self.output()

    def kill9(self) -> None:
        """``kill -9`` the process itself (as a crash would), and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, timeout: float) -> int:
        """SIGTERM, and the exit code once it is gone (``AssertionError`` if it lingers)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM") from None

    def cleanup(self) -> None:
        # start_new_session made it a group leader: take its children (server processes) too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    """The processes of one test, and what they share: environment, stand-ins, API URL."""

    def __init__(self, scratch: Path, env: dict[str, str], standins: StandIns) -> None:
        self.scratch, self.env, self.standins = scratch, env, standins
        self.processes: list[Process] = []
        self.api_url = ""

    def spawn(self, name: str, *args: str) -> Process:
        log = self.scratch / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "dataflows.cli", *args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A short `dataflows` command, to completion."""
        return subprocess.run(
            [sys.executable, "-m", "dataflows.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def serve(self) -> Process:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        # Workers started after the server write approval links to it.
        self.env["DATAFLOWS_PUBLIC_URL"] = self.api_url
        server = self.spawn("serve", "serve", EXAMPLE_APP, "--port", str(port))
        wait_for(lambda: self._ready(server), 30, "the API to be ready")
        return server

    def _ready(self, server: Process) -> bool:
        assert server.alive(), f"dataflows serve exited:\n{server.output()}"
        try:
            return httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker(self, name: str, *options: str) -> Process:
        return self.spawn(name, "worker", EXAMPLE_APP, "--status-interval", "0", *options)

    # -- the API -------------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        response = httpx.get(self.api_url + path, params=params, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in self.processes)

    def cleanup(self) -> None:
        for process in self.processes:
            process.cleanup()


@pytest.fixture
def standins() -> Iterator[StandIns]:
    """Stand-in APIs slow enough that a worker can be killed with requests in flight; Slack
    answers its first call with 429 + Retry-After: 1."""
    latency = {"azure": 0.2, "clickup": 1.0, "shopify": 0.2, "slack": 0.3}
    server = StandIns(latency=latency, rate_limit={"slack": 1})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def process_env(standins: StandIns, **extra: str) -> dict[str, str]:
    """The environment every process of a test shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAFLOWS_", "EXAMPLE_"))}
    env.update(SECRETS)
    env.update(standins.env())
    env.update(DATAFLOWS_API_KEYS=API_KEY, EXAMPLE_COOLDOWN="1s", PYTHONUNBUFFERED="1")
    env.update(DATAFLOWS_SECRET_KEY="e2e-approval-links-secret")
    env.update(extra)
    return env
