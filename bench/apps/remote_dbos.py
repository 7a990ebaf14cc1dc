"""DBOS worker process for the event_remote and two_workers measures.

``python -m bench.apps.remote_dbos URL SCHEMA MARKERS`` launches DBOS and registers two queues:

- ``remote`` (no worker concurrency limit): ``remote_wf`` records a ``ready`` step, blocks in
  ``DBOS.recv("go")`` and, once resumed, writes ``MARKERS/resumed-{i}`` with ``time.time()``;
- ``tw``, registered paused (``worker_concurrency=0``, polled every 0.05 s): ``tw_wf`` runs trivial
  steps. The measure enqueues every run with a ``DBOSClient`` and then sets the queue's
  worker concurrency (a per-process limit, stored in the database): that is the go.

It writes ``MARKERS/ready-{pid}`` once both queues' polling threads run, and serves until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from dbos import DBOS, DBOSConfig

QUEUE_POLL = 0.05
MARKERS = Path(".")


@DBOS.step()
def ready(i: int) -> int:
    return i


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def remote_wf(i: int) -> None:
    ready(i)
    DBOS.recv("go", timeout_seconds=3600)
    write(MARKERS / f"resumed-{i}", repr(time.time()))


@DBOS.workflow()
def tw_wf(i: int, steps: int) -> int:
    for n in range(steps):
        noop(n)
    return i


def write(path: Path, text: str) -> None:
    """Write a marker whole (rename), so a reader never sees it half written."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(text)
    temp.rename(path)


def serve(url: str, schema: str) -> None:
    config: DBOSConfig = {
        "name": "bench-remote",
        "system_database_url": url,
        "dbos_system_schema": schema,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue("remote", polling_interval_sec=QUEUE_POLL)
    DBOS.register_queue("tw", worker_concurrency=0, polling_interval_sec=QUEUE_POLL)
    wanted = {"queue-worker-remote", "queue-worker-tw"}
    deadline = time.monotonic() + 60
    while not wanted <= {t.name for t in threading.enumerate()}:
        if time.monotonic() > deadline:
            raise TimeoutError("DBOS did not start the queues' polling threads")
        time.sleep(0.01)
    write(MARKERS / f"ready-{os.getpid()}", "")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    DBOS.destroy()


if __name__ == "__main__":
    MARKERS = Path(sys.argv[3])
    serve(sys.argv[1], sys.argv[2])
