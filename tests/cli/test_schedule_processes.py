"""Three ``dataflows worker`` processes on one database, one cron schedule: every tick is one run.

Real processes need real time to pass, so the app's clock runs 30 times faster than the
machine's: ``* * * * *`` ticks every two seconds. Leases and timers run fast too; the workflow
takes milliseconds, so that changes nothing here.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflows as df
from tests.cli.test_processes import Command, starter
from tests.pg import DbTarget

APP = """
import asyncio
import os
import time

import dataflows as df

BASE = float(os.environ["FAST_CLOCK_BASE"])
FACTOR = 30.0


class FastClock:
    def now(self) -> float:
        return BASE + (time.time() - BASE) * FACTOR

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / FACTOR)


app = df.Dataflows(clock=FastClock(), retention=None)


@app.workflow("tick", trigger=df.cron("* * * * *", catch_up="all"))
async def tick(event: df.Event, step: df.Step) -> dict[str, object]:
    return {"at": event.data["scheduled_at"], "pid": os.getpid()}
"""

TICKS = 5


@pytest.fixture
def workers(tmp_path: Path, db: DbTarget) -> Iterator[list[Command]]:
    env = {
        "FAST_CLOCK_BASE": str(time.time()),
        "DATAFLOWS_DATABASE_URL": db.url,
        "DATAFLOWS_SCHEMA": db.schema or "dataflows",
    }
    with starter(tmp_path, APP) as start:
        cmds = [start("worker", "flows.py", "--poll-interval", "0.05", **env) for _ in range(3)]
        yield [cmd.wait_started() for cmd in cmds]


async def completed_runs(db: DbTarget, at_least: int, timeout: float) -> list[df.Run]:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    try:
        deadline = time.monotonic() + timeout
        while True:
            runs = await app.list_runs("tick", limit=1000)
            done = [r for r in runs if r.status == "completed"]
            if len(done) >= at_least or time.monotonic() > deadline:
                return done
            await asyncio.sleep(0.2)
    finally:
        await app.close()


def test_three_worker_processes_start_one_run_per_tick(
    workers: list[Command], db: DbTarget
) -> None:
    done = asyncio.run(completed_runs(db, TICKS, timeout=60))
    for worker in workers:
        assert worker.stop() == 0, worker.output()
    runs = asyncio.run(completed_runs(db, 0, timeout=0))  # what the workers left, all finished
    assert len(done) >= TICKS, [w.output() for w in workers]
    per_tick = Counter(r.result["at"] for r in runs)
    assert set(per_tick.values()) == {1}, per_tick
    # Consecutive minutes of the fast clock: no tick skipped between the first and the last.
    minutes = sorted(r.event.ts.timestamp() for r in runs)
    assert [b - a for a, b in zip(minutes, minutes[1:], strict=False)] == [60.0] * (
        len(minutes) - 1
    )
    assert all(r.event.id.startswith("cron:tick:0:") for r in runs)
    assert {r.event.name for r in runs} == {"dataflows/cron"}
