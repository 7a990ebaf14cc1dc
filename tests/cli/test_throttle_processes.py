"""A throttle across two ``dataflows worker`` processes on one database: starts per key within
any period never pass the limit, and every event gets its run.

Each run writes a line to a side file as its first step starts (``time.time()`` of one machine,
so the processes' lines compare). The test's own app only sends events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflows as df
from tests.cli.test_processes import Command, logging_workers
from tests.pg import DbTarget

APP = """
import json
import os
import time

import dataflows as df


def record(run: str, key: str) -> None:
    line = json.dumps([run, key, time.time(), os.getpid()]) + "\\n"
    with open(os.environ["FLOW_LOG"], "a") as log:  # one short write: lines never interleave
        log.write(line)


def register(app: df.Dataflows) -> None:
    @app.workflow(
        "throttled",
        trigger=df.on_event("test/throttled"),
        throttle=df.Throttle(2, "1s", key="data.k"),
    )
    async def throttled(event: df.Event, step: df.Step) -> None:
        await step.run("start", lambda: record(event.id, event.data["k"]))


app = df.Dataflows(retention=None)
register(app)
"""

PERIOD = 1.0


@pytest.fixture
def workers(tmp_path: Path, db: DbTarget) -> Iterator[tuple[list[Command], Path]]:
    with logging_workers(tmp_path, db, APP, "starts.log") as found:
        yield found


async def send_and_finish(db: DbTarget, cmds: list[Command], count: int) -> list[df.Run]:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")

    @app.workflow(
        "throttled",
        trigger=df.on_event("test/throttled"),
        throttle=df.Throttle(2, "1s", key="data.k"),
    )
    async def throttled(event: df.Event, step: df.Step) -> None: ...

    async with app:
        deadline = time.monotonic() + 30
        while len(await app.store.list_workers()) < 2:  # both up, their throttles written
            assert time.monotonic() < deadline, [c.output() for c in cmds]
            await asyncio.sleep(0.05)
        run_ids: list[str] = []
        for n in range(count):
            run_ids += (await app.send("test/throttled", {"k": f"k{n % 2}"})).run_ids
        try:
            return [await app.wait_for_run(r, timeout=60) for r in run_ids]
        except TimeoutError:
            raise AssertionError([c.output() for c in cmds]) from None


def test_starts_per_key_never_pass_the_throttle_across_processes(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers
    runs = asyncio.run(send_and_finish(db, cmds, 12))
    for cmd in cmds:
        assert cmd.stop() == 0, cmd.output()
    assert len(runs) == 12 and {r.status for r in runs} == {"completed"}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 12  # every event got its run, each started once
    for key in ("k0", "k1"):
        times = sorted(t for _, k, t, _ in lines if k == key)
        assert len(times) == 6
        # A start is recorded a little after its claim; allow a fifth of the period for that.
        for t in times:
            assert sum(1 for u in times if t <= u < t + PERIOD * 0.8) <= 2, times
        assert times[-1] - times[0] >= 2 * PERIOD * 0.8  # three windows' worth of starts
