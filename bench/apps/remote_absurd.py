"""Absurd worker process for the event_remote and two_workers measures.

``python -m bench.apps.remote_absurd URL QUEUE CONNECTIONS MARKERS`` connects that many SDK
clients (one connection each), writes ``MARKERS/ready-{pid}`` and waits for SIGUSR1 (the go);
then runs their worker loops until SIGTERM. Tasks are bench.sys_absurd's (``remote`` writes
``MARKERS/resumed-{i}`` with ``time.time()`` when the code after its ``await_event`` runs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bench.sys_absurd import Workers, write_marker


async def serve(url: str, queue: str, connections: int, markers: Path) -> None:
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    workers = Workers(url, queue, connections)
    for c in workers.clients:
        await c._ensure_connected()
    write_marker(markers / f"ready-{os.getpid()}", "")
    await asyncio.wait(
        [asyncio.create_task(go.wait()), asyncio.create_task(stop.wait())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    if stop.is_set():
        for c in workers.clients:
            await c.close()
        return
    async with workers:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
