"""Temporal worker for the memory measure: holds Waiter workflows until they are signalled.

``python -m bench.apps.hold_temporal ADDRESS TASK_QUEUE COUNTS_FILE`` runs a worker with the SDK's
defaults until SIGTERM, and rewrites COUNTS_FILE every 0.2 s with "READY DONE": how many
workflows have reached their wait, and how many have finished.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench import marks
from bench.apps.temporal_flows import ACTIVITIES, RUNNER, WORKFLOWS


async def main(address: str, queue: str, counts: Path) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client, task_queue=queue, workflows=WORKFLOWS, activities=ACTIVITIES, workflow_runner=RUNNER
    ):
        while not stop.is_set():
            tmp = counts.with_suffix(".tmp")
            tmp.write_text(f"{len(marks.READY)} {len(marks.DONE)}")
            tmp.replace(counts)
            await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
