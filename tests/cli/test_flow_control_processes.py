"""Concurrency limits and priority across two ``dataflows worker`` processes on one database.

Every step that counts writes a line to a side file as it starts and ends (``time.time()`` of
one machine, so the processes' lines compare); the assertions read only that file: how many runs
of a key executed at any instant, whether a sleeping run let the next one go, which run went
first. The test's own app only sends events: it registers the same workflows (a run's key and
priority are computed when it is created) but never runs them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from tests.cli.test_processes import Command, logging_workers
from tests.pg import DbTarget

APP = """
import json
import os
import time

import dataflows as df


def record(what: str, run: str, key: str) -> None:
    line = json.dumps([what, run, key, time.time(), os.getpid()]) + "\\n"
    with open(os.environ["FLOW_LOG"], "a") as log:  # one short write: lines never interleave
        log.write(line)


def register(app: df.Dataflows) -> None:
    @app.workflow(
        "limited", trigger=df.on_event("test/limited"), concurrency=df.Concurrency(2, key="data.k")
    )
    async def limited(event: df.Event, step: df.Step) -> None:
        k = event.data["k"]
        await step.run("start", lambda: record("start", event.id, k))
        await step.run("work", lambda: time.sleep(0.1))
        await step.run("end", lambda: record("end", event.id, k))

    @app.workflow("nap", trigger=df.on_event("test/nap"), concurrency=1)
    async def nap(event: df.Event, step: df.Step) -> None:
        for part in ("a", "b"):
            await step.run(f"start-{part}", lambda: record("start", event.id, ""))
            await step.run(f"work-{part}", lambda: time.sleep(0.05))
            await step.run(f"end-{part}", lambda: record("end", event.id, ""))
            if part == "a":
                await step.sleep("rest", "1s")

    @app.workflow(
        "ranked",
        trigger=df.on_event("test/ranked"),
        concurrency=1,
        priority=lambda event: int(event.data["p"]),
    )
    async def ranked(event: df.Event, step: df.Step) -> None:
        await step.run("start", lambda: record("start", event.data["name"], ""))
        await step.run("work", lambda: time.sleep(event.data.get("hold", 0)))
        await step.run("end", lambda: record("end", event.data["name"], ""))

    @app.workflow(
        "rated",
        trigger=df.on_event("test/rated"),
        rate_limit=df.RateLimit(3, "1h", key="data.k"),
    )
    async def rated(event: df.Event, step: df.Step) -> None:
        await step.run("start", lambda: record("start", event.id, event.data["k"]))
        await step.run("end", lambda: record("end", event.id, event.data["k"]))


app = df.Dataflows(retention=None)
register(app)
"""

Line = tuple[str, str, str, float, int]


@pytest.fixture
def workers(tmp_path: Path, db: DbTarget) -> Iterator[tuple[list[Command], Path]]:
    with logging_workers(tmp_path, db, APP, "steps.log") as found:
        yield found


def client(db: DbTarget) -> df.Dataflows:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    namespace: dict[str, Any] = {}
    exec(APP.replace("app = df.Dataflows(retention=None)\nregister(app)\n", ""), namespace)
    namespace["register"](app)
    return app


async def send_and_finish(
    db: DbTarget, events: list[tuple[str, dict[str, Any]]], cmds: list[Command], pause: float = 0
) -> list[df.Run]:
    app = client(db)
    async with app:
        # Both workers are up (their limits written) before the first event.
        deadline = time.monotonic() + 30
        while len(await app.store.list_workers()) < 2:
            assert time.monotonic() < deadline, [c.output() for c in cmds]
            await asyncio.sleep(0.05)
        run_ids: list[str] = []
        for name, data in events:
            run_ids += (await app.send(name, data)).run_ids
            await asyncio.sleep(pause)
        try:
            return [await app.wait_for_run(r, timeout=60) for r in run_ids]
        except TimeoutError:
            raise AssertionError([c.output() for c in cmds]) from None


def read(log: Path) -> list[Line]:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


def most_at_once(lines: list[Line]) -> dict[str, int]:
    """Per key, the most runs between their start and end lines at any instant."""
    most: dict[str, int] = defaultdict(int)
    now: dict[str, int] = defaultdict(int)
    # At one instant an end counts before a start: a slot handed over is not two runs at once.
    for what, _, key, _, _ in sorted(lines, key=lambda x: (x[3], x[0] == "start")):
        now[key] += 1 if what == "start" else -1
        most[key] = max(most[key], now[key])
    return dict(most)


def stop(cmds: list[Command]) -> None:
    for cmd in cmds:
        assert cmd.stop() == 0, cmd.output()


def test_never_more_than_the_limit_per_key_across_processes(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers
    events = [("test/limited", {"k": f"k{n % 3}"}) for n in range(24)]
    runs = asyncio.run(send_and_finish(db, events, cmds))
    stop(cmds)
    assert {r.status for r in runs} == {"completed"}
    lines = read(log)
    assert len(lines) == 2 * len(events)
    assert most_at_once(lines) == {"k0": 2, "k1": 2, "k2": 2}
    assert len({pid for *_, pid in lines}) == 2  # both workers ran some


def test_a_sleeping_run_lets_the_next_one_go(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers
    runs = asyncio.run(send_and_finish(db, [("test/nap", {}) for _ in range(4)], cmds))
    stop(cmds)
    assert {r.status for r in runs} == {"completed"}
    lines = read(log)
    assert most_at_once(lines) == {"": 1}  # never two executing at once
    spans = {
        run: (
            min(t for _, r, _, t, _ in lines if r == run),
            max(t for _, r, _, t, _ in lines if r == run),
        )
        for run in {r for _, r, *_ in lines}
    }
    # Yet whole runs overlapped: a run started while another slept.
    overlapping = [
        (a, b)
        for a in spans
        for b in spans
        if a < b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert overlapping


def test_with_one_slot_free_the_higher_priority_run_starts_first(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers
    events = [("test/ranked", {"name": "blocker", "p": 0, "hold": 1.5})]
    events += [
        ("test/ranked", {"name": name, "p": p})
        for name, p in [("low", 0), ("high", 9), ("mid", 5), ("low2", 0), ("high2", 9)]
    ]
    runs = asyncio.run(send_and_finish(db, events, cmds, pause=0.05))
    stop(cmds)
    assert {r.status for r in runs} == {"completed"}
    starts = [run for what, run, *_ in sorted(read(log), key=lambda x: x[3]) if what == "start"]
    assert starts == ["blocker", "high", "high2", "mid", "low", "low2"]


def test_rate_limited_starts_create_no_run_and_are_reported(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers

    async def go() -> tuple[list[df.SendResult], list[df.Run]]:
        senders = [client(db), client(db)]  # two connections sending at once
        try:
            sends = [
                senders[n % 2].send("test/rated", {"k": "a" if n < 10 else "b"}) for n in range(12)
            ]
            results = await asyncio.gather(*sends)
            runs = [
                await senders[0].wait_for_run(r, timeout=60) for s in results for r in s.run_ids
            ]
            return list(results), runs
        finally:
            for sender in senders:
                await sender.close()

    results, runs = asyncio.run(go())
    stop(cmds)
    assert {r.status for r in runs} == {"completed"}
    assert len(runs) == 5
    skipped = [s for r in results for s in r.skipped]
    assert skipped == [("rated", "rate limit a: 3 per 3600s")] * 7
    started = [key for what, _, key, *_ in read(log) if what == "start"]
    assert sorted(started) == ["a", "a", "a", "b", "b"]
