"""dataflows worker for the failover measure: a run whose first step holds until its worker dies.

``python -m bench.apps.failover_dataflows URL SCHEMA MARKERS`` runs a worker until SIGTERM, with a
30 s lease: a take-over within a second comes from seeing the dead worker's lock free, not from
the lease. The ``hold`` step's first execution writes ``MARKERS/held-{run_id}`` (this pid) and
blocks; any later execution (the worker that took the run over) returns at once with the time it
began, which is when the run resumed elsewhere.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import dataflows as df

LEASE_SECONDS = 30.0


def make_app(url: str, schema: str, markers: Path) -> df.Dataflows:
    app = df.Dataflows(url, schema=schema, retention=None)

    def hold() -> dict[str, Any]:
        began = time.time()
        run_id = df.current_step().run_id
        marker = markers / f"held-{run_id}"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return {"resumed_at": began, "pid": os.getpid()}  # taken over: go on at once
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(LEASE_SECONDS * 2)  # until killed
        return {"resumed_at": None, "pid": os.getpid()}

    @app.workflow("failover")
    async def failover(event: df.Event, step: df.Step) -> dict[str, Any]:
        held: dict[str, Any] = await step.run("hold", hold)
        return held

    return app


if __name__ == "__main__":
    url, schema, markers = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    app = make_app(url, schema, markers)
    sys.exit(app.run_worker(concurrency=4, lease_seconds=LEASE_SECONDS, poll_interval=1.0))
