"""A worker program for the fault tests, run as a real subprocess (``python crash_app.py``).

Configured by environment variables:

- ``FAULTS_DB_URL`` / ``FAULTS_DB_SCHEMA``: the store.
- ``FAULTS_DIR``: a scratch directory. Every call of every step function appends one line
  ``"{run_id} {step_key}"`` to ``calls.log`` there (``O_APPEND`` + ``fsync``, so a line survives
  the SIGKILL that may follow it); crash-point markers and release files live there too.
- ``FAULTS_LEASE``, ``FAULTS_POLL``, ``FAULTS_GRACE``, ``FAULTS_MAX_RECOVERIES``: worker options.
- ``FAULTS_BLOCK=1``: the ``blocker`` workflow's step and the ``tail_blocker`` workflow's last
  line wait for a release file: ``release-{run_id}`` frees every worker, ``release-{run_id}-{pid}``
  one (so only a worker started with it blocks; a worker taking over runs straight through).
- ``starts.log``: the ``nap``/``cancellable`` workflows' steps append ``"{run_id} {step_key}
  {time}"`` when they start, so a test can tell whether any step started after a cancel.
- ``FAULTS_DEAF=1``: the worker's heartbeats never report a lost lease (as if they went nowhere),
  so a paused worker that wakes up goes on to write, and only the database's fence stops it.

The test process imports this module too and calls :func:`register` on its client app, so that
``app.start`` knows the same workflow ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import dataflows as df
from dataflows.worker import Worker

CALLS = "calls.log"
STARTS = "starts.log"
#: How long a blocked step waits for its release file before giving up (bounds every test).
BLOCK_LIMIT = 30.0


def scratch() -> Path:
    return Path(os.environ["FAULTS_DIR"])


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def record_call() -> df.StepContext:
    """Log this step call, durably, before anything else can kill the process."""
    ctx = df.current_step()
    _append(scratch() / CALLS, f"{ctx.run_id} {ctx.step_key}")
    return ctx


def crash_once(point: str, run_id: str) -> None:
    """SIGKILL this process the first time ``point`` is reached for ``run_id``."""
    marker = scratch() / f"crashed-{point}-{run_id}"
    if marker.exists():
        return
    _append(marker, str(os.getpid()))  # written (and fsynced) before the kill
    os.kill(os.getpid(), signal.SIGKILL)


def _output(name: str, **extra: Any) -> dict[str, Any]:
    return {"step": name, "pid": os.getpid(), **extra}


# -- step functions (sync: they run in the worker's thread pool) --------------------------------


def step_a(n: int) -> dict[str, Any]:
    record_call()
    return _output("a", n=n + 1)


def step_b(n: int, crash: str | None) -> dict[str, Any]:
    ctx = record_call()
    if crash == "in_step":
        crash_once("in_step", ctx.run_id)  # side effect done, result not yet committed
    return _output("b", n=n * 10)


def step_c(n: int) -> dict[str, Any]:
    record_call()
    return _output("c", n=n + 5)


def step_block() -> dict[str, Any]:
    """Mark that the step started (with our pid), then wait for the release file if told to."""
    ctx = record_call()
    _append(scratch() / f"started-{ctx.run_id}", str(os.getpid()))
    wait_for_release(ctx.run_id)
    _append(scratch() / f"finished-{ctx.run_id}", str(os.getpid()))
    return _output("block")


def wait_for_release(run_id: str) -> None:
    """With ``FAULTS_BLOCK=1``, wait for this run's release file, or this process's own."""
    if os.environ.get("FAULTS_BLOCK") != "1":
        return
    releases = [scratch() / f"release-{run_id}", scratch() / f"release-{run_id}-{os.getpid()}"]
    deadline = time.monotonic() + BLOCK_LIMIT
    while not any(r.exists() for r in releases) and time.monotonic() < deadline:
        time.sleep(0.02)


def tail_block(run_id: str) -> None:
    """The last line of ``tail_blocker``, outside any step: mark it reached, wait for release."""
    _append(scratch() / f"tail-{run_id}", str(os.getpid()))
    wait_for_release(run_id)


def record_start() -> None:
    """Log that this step function started, with the time (``starts.log``)."""
    ctx = df.current_step()
    _append(scratch() / STARTS, f"{ctx.run_id} {ctx.step_key} {time.time()!r}")


def started_step(name: str) -> dict[str, Any]:
    record_start()
    return _output(name)


def started_block() -> dict[str, Any]:
    """As ``step_block``, its start logged in ``starts.log``."""
    record_start()
    return step_block()


def step_poison() -> None:
    record_call()
    os._exit(1)  # every time: a segfault / OOM stand-in


def register(app: df.Dataflows) -> None:
    @app.workflow("crashy")
    async def crashy(event: df.Event, step: df.Step) -> dict[str, Any]:
        crash = event.data.get("crash")
        a = await step.run("a", step_a, event.data.get("n", 1))
        b = await step.run("b", step_b, a["n"], crash)
        if crash == "after_commit":
            crash_once("after_commit", step.run_id)  # b's result is committed
        c = await step.run("c", step_c, b["n"])
        return {"a": a, "b": b, "c": c}

    @app.workflow("sleeper")
    async def sleeper(event: df.Event, step: df.Step) -> dict[str, Any]:
        a = await step.run("a", step_a, 1)
        await step.sleep("nap", event.data["seconds"])
        c = await step.run("c", step_c, a["n"])
        return {"a": a, "c": c}

    @app.workflow("waiter")
    async def waiter(event: df.Event, step: df.Step) -> dict[str, Any]:
        a = await step.run("a", step_a, 1)
        decision = await step.wait_for_event(
            "approval", event="faults/approved", match="data.key", timeout="2m"
        )
        approved = None if decision is None else decision.data["approved"]
        c = await step.run("c", step_c, a["n"])
        return {"a": a, "approved": approved, "c": c}

    @app.workflow("blocker")
    async def blocker(event: df.Event, step: df.Step) -> dict[str, Any]:
        block = await step.run("block", step_block)
        await step.sleep("pause", event.data.get("pause", 0))
        c = await step.run("c", step_c, 1)
        return {"block": block, "c": c}

    @app.workflow("tail_blocker")
    async def tail_blocker(event: df.Event, step: df.Step) -> dict[str, Any]:
        a = await step.run("a", step_a, 1)
        await asyncio.to_thread(tail_block, step.run_id)  # after the last step: the outcome next
        return {"a": a, "pid": os.getpid()}

    @app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> dict[str, Any]:
        """A short sleep (held in the worker's memory) between two steps."""
        await step.run("before", started_step, "before")
        await step.sleep("nap", event.data["seconds"])
        after: dict[str, Any] = await step.run("after", started_step, "after")
        return after

    @app.workflow(
        "cancellable",
        trigger=df.on_event("faults/order"),
        cancel_on=[df.on_event("faults/cancel", match="data.key")],
    )
    async def cancellable(event: df.Event, step: df.Step) -> dict[str, Any]:
        await step.run("first", started_step, "first")
        if event.data.get("block"):
            await step.run("block", started_block)
        else:
            await step.wait_for_event(
                "approval", event="faults/approved", match="data.key", timeout="2m"
            )
        last: dict[str, Any] = await step.run("last", started_step, "last")
        return last

    @app.workflow("poison", retries=0)
    async def poison(event: df.Event, step: df.Step) -> None:
        await step.run("boom", step_poison)


async def _deaf_renewal(self: Worker) -> None:
    """A heartbeat whose answers never arrive: the worker believes it still holds its leases."""
    self._renewed_at = time.monotonic()


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s [{os.getpid()}] %(name)s %(levelname)s %(message)s",
    )
    env = os.environ
    if env.get("FAULTS_DEAF") == "1":
        Worker._renew_leases = _deaf_renewal  # type: ignore[method-assign]
    app = df.Dataflows(env["FAULTS_DB_URL"], schema=env.get("FAULTS_DB_SCHEMA") or "dataflows")
    register(app)
    return app.run_worker(
        concurrency=4,
        lease_seconds=float(env.get("FAULTS_LEASE", "1.0")),
        poll_interval=float(env.get("FAULTS_POLL", "0.05")),
        shutdown_grace=float(env.get("FAULTS_GRACE", "10")),
        max_recoveries=int(env.get("FAULTS_MAX_RECOVERIES", "3")),
    )


if __name__ == "__main__":
    sys.exit(main())
