"""Fault-test harness: worker programs as real subprocesses, and a client app in the test.

Every subprocess is killed (SIGCONT first, in case it was stopped) and reaped when the test ends,
whatever happened; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import dataflows as df
from tests.faults.apps import crash_app
from tests.pg import DbTarget

APP = Path(crash_app.__file__)

#: Short leases and polls so recovery takes about a second.
LEASE = 1.0
POLL = 0.05


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that;
    fail the test after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class WorkerProcess:
    """One ``crash_app.py`` worker subprocess; its stderr goes to a log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    async def wait_exit(self, timeout: float) -> int:
        await eventually(lambda: not self.alive(), timeout, f"worker {self.name} to exit")
        code = self.popen.returncode
        assert code is not None
        return code

    def kill(self) -> None:
        """SIGKILL (a stopped process dies too) and reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stopped(self) -> bool:
        """Whether the process is in the stopped state (after SIGSTOP)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process, all threads, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Faults:
    """What a fault test works with: the store, a scratch dir, a client app, worker processes."""

    def __init__(self, db: DbTarget, scratch: Path, client: df.Dataflows) -> None:
        self.db = db
        self.scratch = scratch
        self.client = client
        self.workers: list[WorkerProcess] = []

    # -- worker processes ----------------------------------------------------------------------------

    def worker_url(self, name: str) -> str:
        if self.db.kind != "postgres":
            return self.db.url
        sep = "&" if "?" in self.db.url else "?"
        return f"{self.db.url}{sep}application_name=faults-{name}"

    def start_worker(self, name: str, **env: str | float) -> WorkerProcess:
        log = self.scratch / f"worker-{name}.log"
        full_env = {
            **os.environ,
            "FAULTS_DB_URL": self.worker_url(name),
            "FAULTS_DB_SCHEMA": self.db.schema or "",
            "FAULTS_DIR": str(self.scratch),
            "FAULTS_LEASE": str(LEASE),
            "FAULTS_POLL": str(POLL),
        }
        full_env.update({key: str(value) for key, value in env.items()})
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, str(APP)],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(name, popen, log)
        self.workers.append(worker)
        return worker

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.alive():
                os.kill(worker.pid, signal.SIGCONT)
            worker.kill()

    # -- observations ----------------------------------------------------------------------------------

    def calls(self, run_id: str) -> Counter[str]:
        """How many times each step function ran for ``run_id``, from the workers' call log."""
        path = self.scratch / crash_app.CALLS
        lines = path.read_text().splitlines() if path.exists() else []
        return Counter(key for rid, key in (ln.split(" ", 1) for ln in lines) if rid == run_id)

    def pids(self, kind: str, run_id: str) -> list[int]:
        """Pids written by ``step_block`` to its ``started-``/``finished-`` files."""
        path = self.scratch / f"{kind}-{run_id}"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    async def registered(self) -> list[str]:
        """The ids of the workers the store records alive."""
        return [worker_id for worker_id, _ in await self.client.store.list_workers()]

    async def wait_status(self, run_id: str, status: str, timeout: float = 15.0) -> df.Run:
        async def check() -> df.Run | None:
            run = await self.client.get_run(run_id)
            return run if run.status == status else None

        run: df.Run = await eventually(check, timeout, f"run {run_id} to be {status}")
        return run

    async def wait_done(self, run_id: str, timeout: float = 20.0) -> df.Run:
        try:
            return await self.client.wait_for_run(run_id, timeout=timeout)
        except TimeoutError:
            logs = "\n".join(f"--- {w.name}\n{w.log_text()[-3000:]}" for w in self.workers)
            run = await self.client.get_run(run_id)
            raise AssertionError(f"run not done: {run}\n{logs}") from None

    # -- pausing a worker without it holding the database ------------------------------------------------

    async def stop_quietly(self, worker: WorkerProcess) -> None:
        """SIGSTOP ``worker`` at a moment it holds no open transaction.

        A process frozen inside a transaction would hold the SQLite write lock (or PostgreSQL row
        locks) and block the other worker: that is a different fault than a zombie lease.
        """
        for _ in range(100):
            os.kill(worker.pid, signal.SIGSTOP)
            await eventually(worker.stopped, 5.0, f"worker {worker.name} to stop")
            if await asyncio.to_thread(self._no_transaction_held, worker.name):
                return
            os.kill(worker.pid, signal.SIGCONT)
            await asyncio.sleep(0.005)
        raise AssertionError(f"worker {worker.name} never paused outside a transaction")

    def _no_transaction_held(self, name: str) -> bool:
        if self.db.kind == "postgres":
            with psycopg.connect(self.db.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = %s AND state <> 'idle'",
                    [f"faults-{name}"],
                ).fetchone()
            return row is not None and row[0] == 0
        path = self.db.url.removeprefix("sqlite:///")
        probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()


@contextlib.asynccontextmanager
async def faults_on(db: DbTarget, scratch: Path) -> AsyncIterator[Faults]:
    """A harness on ``db`` with a client app of its own; workers killed and the app closed after."""
    client = df.Dataflows(db.url, schema=db.schema or "dataflows")
    crash_app.register(client)
    await client.open()  # migrate now, so workers started next find the schema ready
    harness = Faults(db, scratch, client)
    try:
        yield harness
    finally:
        harness.cleanup()
        await client.close()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture
async def client(db: DbTarget) -> AsyncIterator[df.Dataflows]:
    """A client app on the test's store with the worker program's workflows registered."""
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    crash_app.register(app)
    await app.open()  # migrate now, so workers started next find the schema ready
    yield app
    await app.close()


@pytest.fixture
def faults(db: DbTarget, scratch: Path, client: df.Dataflows) -> Iterator[Faults]:
    harness = Faults(db, scratch, client)
    try:
        yield harness
    finally:
        harness.cleanup()


def assert_steps_unique(run: df.Run) -> None:
    keys = [s.key for s in run.steps]
    assert len(keys) == len(set(keys)), f"a step key recorded twice: {keys}"
