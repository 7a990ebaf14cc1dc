"""Absurd worker for the memory measure: tasks that each wait in ``await_event``.

``python -m bench.apps.hold_absurd URL QUEUE CONNECTIONS`` runs that many SDK worker loops in one
process until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bench.sys_absurd import Workers


async def serve(url: str, queue: str, connections: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Workers(url, queue, connections):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
