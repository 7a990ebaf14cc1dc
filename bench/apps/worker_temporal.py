"""Temporal worker process for the event_remote and two_workers measures.

``python -m bench.apps.worker_temporal ADDRESS TASK_QUEUE CONCURRENCY STATUS_FILE [--hold]``
connects its client, imports the workflows, and writes "ready" to STATUS_FILE; with ``--hold`` it
then waits for SIGUSR1 before it starts polling (so the measure can time from that signal,
without the interpreter's and the SDK's start-up). It runs a worker until SIGTERM, rewriting
STATUS_FILE every 0.2 s with "READY DONE": how many Waiter workflows reached their wait and how
many finished. CONCURRENCY 0 keeps the SDK's defaults; otherwise it is the worker's
``max_concurrent_activities`` and ``max_concurrent_workflow_tasks`` (as in the throughput
measure).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench import marks
from bench.apps.temporal_flows import ACTIVITIES, RUNNER, WORKFLOWS


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def main(address: str, queue: str, concurrency: int, status: Path, hold: bool) -> None:
    client = await Client.connect(address)
    loop = asyncio.get_running_loop()
    stop, go = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    limits: dict[str, Any] = {}
    if concurrency:
        limits = {
            "max_concurrent_activities": concurrency,
            "max_concurrent_workflow_tasks": concurrency,
        }
    write(status, "ready")
    if hold:
        await go.wait()
    async with Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        workflow_runner=RUNNER,
        **limits,
    ):
        while not stop.is_set():
            write(status, f"{len(marks.READY)} {len(marks.DONE)}")
            await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), "--hold" in sys.argv)
    )
