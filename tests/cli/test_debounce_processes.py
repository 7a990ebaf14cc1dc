"""A debounce across two ``dataflows worker`` processes on one database: a burst of events with
one key starts one run, with the last event's data, a period after the last event; a stream
that never pauses starts its run ``max_wait`` after its first event; another key has its own run.

Each run writes a line to a side file as its first step starts (``time.time()`` of one machine,
so the processes' lines and the test's sends compare). The test's own app only sends events
(a debounce is applied at intake, by the sender's code).
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

PERIOD = 0.5
MAX_WAIT = 1.5
#: How late a start may be: the workers poll every 0.05 s; the rest is a loaded machine.
LATENCY = 1.0
#: The engine's clock is the database's, the side file's the machine's: a little skew.
SKEW = 0.05

APP = f"""
import json
import os
import time

import dataflows as df


def record(workflow: str, data: dict) -> None:
    line = json.dumps([workflow, data, time.time(), os.getpid()]) + "\\n"
    with open(os.environ["FLOW_LOG"], "a") as log:  # one short write: lines never interleave
        log.write(line)


def register(app: df.Dataflows) -> None:
    @app.workflow(
        "bounced",
        trigger=df.on_event("test/bounced"),
        debounce=df.Debounce({PERIOD}, key="data.k"),
    )
    async def bounced(event: df.Event, step: df.Step) -> None:
        await step.run("start", record, "bounced", event.data)

    @app.workflow(
        "capped",
        trigger=df.on_event("test/capped"),
        debounce=df.Debounce({PERIOD}, key="data.k", max_wait={MAX_WAIT}),
    )
    async def capped(event: df.Event, step: df.Step) -> None:
        await step.run("start", record, "capped", event.data)


app = df.Dataflows(retention=None)
register(app)
"""


def sender(db: DbTarget) -> df.Dataflows:
    """The workers' workflows, in the test's process: only its sends use them."""
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")

    @app.workflow(
        "bounced", trigger=df.on_event("test/bounced"), debounce=df.Debounce(PERIOD, key="data.k")
    )
    async def bounced(event: df.Event, step: df.Step) -> None: ...

    @app.workflow(
        "capped",
        trigger=df.on_event("test/capped"),
        debounce=df.Debounce(PERIOD, key="data.k", max_wait=MAX_WAIT),
    )
    async def capped(event: df.Event, step: df.Step) -> None: ...

    return app


@pytest.fixture
def workers(tmp_path: Path, db: DbTarget) -> Iterator[tuple[list[Command], Path]]:
    with logging_workers(tmp_path, db, APP, "starts.log") as found:
        yield found


class Sent:
    """What the test sent: per event, its data and when its send began and returned."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object], float, float]] = []
        self.run_ids: set[str] = set()

    async def send(self, app: df.Dataflows, name: str, data: dict[str, object]) -> None:
        before = time.time()
        result = await app.send(name, data)
        self.events.append((name, data, before, time.time()))
        self.run_ids.update(result.run_ids)
        for workflow_id, reason in result.skipped:
            assert reason.startswith("debounced into run "), (workflow_id, reason)
            self.run_ids.add(reason.removeprefix("debounced into run "))

    def of(self, name: str, key: str) -> list[tuple[dict[str, object], float, float]]:
        return [(d, b, a) for n, d, b, a in self.events if n == name and d["k"] == key]


async def send_and_finish(db: DbTarget, cmds: list[Command]) -> tuple[Sent, list[df.Run]]:
    app = sender(db)
    sent = Sent()
    async with app:
        deadline = time.monotonic() + 30
        while len(await app.store.list_workers()) < 2:
            assert time.monotonic() < deadline, [c.output() for c in cmds]
            await asyncio.sleep(0.05)

        async def burst() -> None:  # 8 events of key a, 2 of key b, well within a period
            for n in range(8):
                await sent.send(app, "test/bounced", {"k": "a", "n": n})
                if n in (2, 5):
                    await sent.send(app, "test/bounced", {"k": "b", "n": n})
                await asyncio.sleep(0.03)

        async def stream() -> None:  # key c every 0.2 s (< PERIOD) for longer than MAX_WAIT
            first = time.monotonic()
            n = 0
            while time.monotonic() - first < MAX_WAIT + 0.6:
                await sent.send(app, "test/capped", {"k": "c", "n": n})
                n += 1
                await asyncio.sleep(0.2)

        await asyncio.gather(burst(), stream())
        try:
            runs = [await app.wait_for_run(r, timeout=30) for r in sorted(sent.run_ids)]
        except TimeoutError:
            raise AssertionError([c.output() for c in cmds]) from None
    return sent, runs


def test_a_debounce_holds_across_worker_processes(
    workers: tuple[list[Command], Path], db: DbTarget
) -> None:
    cmds, log = workers
    sent, runs = asyncio.run(send_and_finish(db, cmds))
    for cmd in cmds:
        assert cmd.stop() == 0, cmd.output()
    assert {r.status for r in runs} == {"completed"}, runs
    starts = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert len(starts) == len(runs)  # each run started once

    # The burst: one run per key, with the last event's data, a period after the last event.
    for key in ("a", "b"):
        events = sent.of("test/bounced", key)
        [(data, at, _)] = [(d, t, p) for w, d, t, p in starts if w == "bounced" and d["k"] == key]
        last_data, last_before, last_after = events[-1]
        assert data == last_data, (key, data, events)
        assert at >= last_before + PERIOD - SKEW, (key, at - last_before)
        assert at <= last_after + PERIOD + LATENCY, (key, at - last_after)
    assert len(sent.of("test/bounced", "a")) == 8

    # The stream: its first run starts max_wait after the first event, though events kept
    # coming, with the data of an event sent before it started; the events after that start
    # a run of their own, a period after the last of them.
    events = sent.of("test/capped", "c")
    assert events[-1][2] - events[0][1] > MAX_WAIT
    capped = sorted((t, d) for w, d, t, _ in starts if w == "capped")
    assert len(capped) == 2, capped
    (first_at, first_data), (second_at, second_data) = capped
    assert first_at >= events[0][1] + MAX_WAIT - SKEW, first_at - events[0][1]
    assert first_at <= events[0][2] + MAX_WAIT + LATENCY, first_at - events[0][2]
    sent_before = [d for d, before, _ in events if before < first_at]
    assert first_data in sent_before[-2:], (first_data, sent_before)  # the last one in, maybe
    assert second_data == events[-1][0]
    assert second_at >= events[-1][1] + PERIOD - SKEW
