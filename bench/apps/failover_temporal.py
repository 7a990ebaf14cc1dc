"""Temporal worker for the failover measure: ``python -m bench.apps.failover_temporal ADDRESS
TASK_QUEUE`` runs a worker with the SDK's defaults until SIGTERM (or SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.apps.temporal_flows import ACTIVITIES, RUNNER, WORKFLOWS


async def main(address: str, queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client, task_queue=queue, workflows=WORKFLOWS, activities=ACTIVITIES, workflow_runner=RUNNER
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
