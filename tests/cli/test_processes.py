"""``dev``, ``worker`` and ``serve`` as real processes: start, serve, recycle, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import dataflows as df
from tests.pg import DbTarget

T = TypeVar("T")

APP = """
import os
import dataflows as df

app = df.Dataflows()


def pid() -> int:
    return os.getpid()


@app.workflow("record-pid", trigger=df.on_event("test/pid"))
async def record_pid(event: df.Event, step: df.Step) -> dict[str, object]:
    return {"pid": await step.run("pid", pid), "n": event.data.get("n")}
"""
URL = re.compile(r"http://127\.0\.0\.1:\d+")


class Command:
    """A ``dataflows`` process whose output goes to files (a pipe nobody reads could block it)."""

    def __init__(self, folder: Path, args: list[str], env: dict[str, str]) -> None:
        # Files of its own, also when several processes of one command run in one folder.
        name, n = args[0], 1
        while (folder / f"{name}.out").exists():
            n += 1
            name = f"{args[0]}-{n}"
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "dataflows.cli", *args],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=err,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def url(self) -> str:
        found = eventually(lambda: URL.search(self.out.read_text()), 20, "the API's address", self)
        return found.group(0)

    def wait_started(self, timeout: float = 20) -> Command:
        """Wait until a worker command says its worker started (its signal handlers are in
        place from then on: a SIGTERM sent earlier would kill it unannounced)."""
        eventually(lambda: " started" in self.err.read_text(), timeout, "the worker to start", self)
        return self

    def stop(self, timeout: float = 15) -> int:
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not stop on SIGTERM:\n{self.output()}") from None


def eventually(check: Callable[[], T | None], timeout: float, what: str, cmd: Command) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if cmd.popen.poll() is not None:
            raise AssertionError(f"exited ({cmd.popen.returncode}) before {what}:\n{cmd.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{cmd.output()}")
        time.sleep(0.05)


@contextmanager
def starter(folder: Path, app: str) -> Iterator[Callable[..., Command]]:
    """Starts ``dataflows ARGS`` in ``folder`` (holding ``app`` as ``flows.py``, its database
    beside it) with extra environment variables; kills leftovers."""
    (folder / "flows.py").write_text(app)
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    base["DATAFLOWS_DATABASE_URL"] = database_url(folder)
    started: list[Command] = []

    def start(*args: str, **env: str) -> Command:
        cmd = Command(folder, list(args), {**base, **env})
        started.append(cmd)
        return cmd

    try:
        yield start
    finally:
        for cmd in started:
            if cmd.popen.poll() is None:
                cmd.popen.kill()
                cmd.popen.wait(10)


@contextmanager
def logging_workers(
    folder: Path, db: DbTarget, app: str, log_name: str
) -> Iterator[tuple[list[Command], Path]]:
    """Two ``dataflows worker`` processes running ``app`` on ``db``, started and ready, and the
    side file (``FLOW_LOG`` in their environment) their workflows write lines to."""
    log = folder / log_name
    log.touch()
    env = {
        "FLOW_LOG": str(log),
        "DATAFLOWS_DATABASE_URL": db.url,
        "DATAFLOWS_SCHEMA": db.schema or "dataflows",
    }
    with starter(folder, app) as start:
        args = ("worker", "flows.py", "--poll-interval", "0.05", "--concurrency", "3")
        cmds = [start(*args, **env) for _ in range(2)]
        yield [cmd.wait_started() for cmd in cmds], log


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    with starter(tmp_path, APP) as start:
        yield start


def database_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'flows.db'}"


def client(folder: Path) -> df.Dataflows:
    """The test's side of the app: it knows the workflow's trigger, never runs it."""
    app = df.Dataflows(database_url(folder))

    @app.workflow("record-pid", trigger=df.on_event("test/pid"))
    async def record_pid(event: df.Event, step: df.Step) -> None:
        raise AssertionError("runs only in the worker processes")

    return app


def run_all(folder: Path, count: int, cmd: Command, timeout: float = 30) -> list[Any]:
    """Send ``count`` events and return the results of the runs they start, once all completed."""

    async def go() -> list[Any]:
        app = client(folder)
        async with app:
            run_ids = [(await app.send("test/pid", {"n": n})).run_ids[0] for n in range(count)]
            deadline = time.monotonic() + timeout
            while True:
                runs = [await app.get_run(run_id) for run_id in run_ids]
                if all(run.status == "completed" for run in runs):
                    return [run.result for run in runs]
                if cmd.popen.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"runs did not complete:\n{cmd.output()}")
                await asyncio.sleep(0.05)

    return asyncio.run(go())


def test_dev_serves_the_api_and_runs_the_worker(
    start: Callable[..., Command], tmp_path: Path
) -> None:
    dev = start("dev", "flows.py", "--port", "0", DATAFLOWS_GITHUB_SECRET="s3cret")
    url = dev.url()
    banner = dev.out.read_text()
    assert f"{url}/hooks/github" in banner
    assert str(tmp_path / "flows.db") in banner
    assert f"curl -X POST {url}/events" in banner and "test/pid" in banner
    assert httpx.get(f"{url}/healthz").status_code == 200

    sent = httpx.post(f"{url}/events", json={"name": "test/pid", "data": {"n": 7}})
    assert sent.status_code == 202
    run_id = sent.json()["run_ids"][0]

    async def finished() -> df.Run:
        async with client(tmp_path) as app:
            return await app.wait_for_run(run_id, timeout=15)

    run = asyncio.run(finished())
    assert run.status == "completed"
    assert run.result == {"pid": dev.pid, "n": 7}  # the worker runs in the dev process
    assert dev.stop() == 0
    assert "stopping the worker, then the API" in dev.output()


def test_worker_recycles_under_its_supervisor(
    start: Callable[..., Command], tmp_path: Path
) -> None:
    worker = start(
        "worker", "flows.py", "--max-runs", "2", "--concurrency", "1", "--poll-interval", "0.05"
    )
    results = run_all(tmp_path, 5, worker)
    assert sorted(r["n"] for r in results) == list(range(5))
    per_process = Counter(r["pid"] for r in results)
    assert len(per_process) >= 3 and max(per_process.values()) <= 2, per_process
    assert worker.pid not in per_process  # runs happen in the supervised children
    assert "recycled itself; starting a fresh one" in worker.output()

    assert worker.stop() == 0
    for pid in per_process:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_worker_in_process_stops_on_sigterm(start: Callable[..., Command], tmp_path: Path) -> None:
    worker = start("worker", "flows.py", "--poll-interval", "0.05")
    assert [r["pid"] for r in run_all(tmp_path, 1, worker)] == [worker.pid]
    assert worker.stop() == 0
    assert "SIGTERM: stopping" in worker.output()


@pytest.mark.parametrize("keys", ["", "key-1,key-2"])
def test_serve_says_loudly_when_the_api_is_open(start: Callable[..., Command], keys: str) -> None:
    serve = start("serve", "flows.py", "--port", "0", DATAFLOWS_API_KEYS=keys)
    url = serve.url()
    assert httpx.get(f"{url}/healthz").status_code == 200
    warned = "WARNING: no API keys are configured" in serve.err.read_text()
    assert warned == (keys == "")
    assert serve.stop() == 0


def test_serve_with_several_processes(start: Callable[..., Command]) -> None:
    serve = start("serve", "flows.py", "--port", "0", "--workers", "2")
    url = serve.url()
    check = eventually(lambda: _status(f"{url}/workflows"), 20, "the servers to answer", serve)
    assert check == 200
    started = "Application startup complete"
    eventually(lambda: serve.output().count(started) == 2, 20, "both servers", serve)
    assert serve.stop() == 0


def _status(url: str) -> int | None:
    try:
        return httpx.get(url).status_code
    except httpx.TransportError:
        return None


def test_metrics_add_up_across_server_processes(start: Callable[..., Command]) -> None:
    """Under ``serve --workers 2`` each request is counted by the process that took it; every
    scrape, whichever process answers it, reports the total of both."""
    serve = start("serve", "flows.py", "--port", "0", "--workers", "2")
    url = serve.url()
    eventually(lambda: serve.output().count("Application startup complete") == 2, 20, "both", serve)
    sent = 24
    for n in range(sent):  # a new connection each: the processes share the accepted ones
        answer = httpx.post(f"{url}/events", json={"name": "test/pid", "data": {"n": n}})
        assert answer.status_code == 202, answer.text
    started = re.compile(r'^dataflows_runs_started_total\{workflow="record-pid"\} (\S+)$', re.M)
    totals = set()
    for _ in range(10):
        found = started.search(httpx.get(f"{url}/metrics").text)
        assert found is not None
        totals.add(float(found.group(1)))
    assert totals == {float(sent)}
    assert serve.stop() == 0
