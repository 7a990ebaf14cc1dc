"""dataflows worker for the event_remote measure: runs wait for an event each, in this process.

``python -m bench.apps.event_dataflows URL SCHEMA FIFO`` runs a worker until SIGTERM. The code
after the wait writes ``"{i} {time.time()}"`` to the FIFO (the bench process reads it) before
the run finishes: the run's result is written after that line, outside the measured interval.
"""

from __future__ import annotations

import os
import sys
import time

import dataflows as df


def make_app(url: str, schema: str, fifo: int | None = None) -> df.Dataflows:
    app = df.Dataflows(url, schema=schema, retention=None)

    @app.workflow("event_remote", trigger=df.on_event("bench/wait"))
    async def wait(event: df.Event, step: df.Step) -> None:
        await step.wait_for_event("go", "bench/go", match="data.i", timeout="1h")
        resumed = time.time()
        if fifo is not None:
            os.write(fifo, f"{event.data['i']} {resumed!r}\n".encode())

    return app


if __name__ == "__main__":
    url, schema, path = sys.argv[1], sys.argv[2], sys.argv[3]
    fifo = os.open(path, os.O_WRONLY)  # the bench holds the reading end open already
    sys.exit(make_app(url, schema, fifo).run_worker(concurrency=20))
