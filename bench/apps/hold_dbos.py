"""DBOS worker for the memory measure: workflows that each block in ``DBOS.recv``.

``python -m bench.apps.hold_dbos URL SCHEMA`` launches DBOS, registers the ``hold`` queue
(no worker concurrency limit) and serves until SIGTERM. Each waiting workflow holds one thread
of DBOS's executor: that is how DBOS waits.
"""

from __future__ import annotations

import signal
import sys
import threading

from dbos import DBOS, DBOSConfig


@DBOS.step()
def ready(i: int) -> int:
    return i


@DBOS.workflow()
def hold_wf(i: int) -> None:
    ready(i)
    DBOS.recv("release", timeout_seconds=86400)


def serve(url: str, schema: str) -> None:
    config: DBOSConfig = {
        "name": "bench-hold",
        "system_database_url": url,
        "dbos_system_schema": schema,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue("hold", polling_interval_sec=0.05)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    DBOS.destroy()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
