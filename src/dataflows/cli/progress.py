"""Status lines of a running worker: what it finished since the last line."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from dataflows import metrics
from dataflows.worker import Worker

log = logging.getLogger("dataflows.cli")


def finished_by_status() -> Counter[str]:
    """Runs this process's workers completed or failed so far, from the engine's metrics."""
    counts: Counter[str] = Counter()
    for (_, status), value in metrics.counts("RUNS_FINISHED").items():
        counts[status] += int(value)
    return counts


class Progress:
    """Logs one line every ``interval`` seconds in which the worker finished something.

    A run "finished" by a worker either completed, failed, or was handed back to the database
    (suspended on a sleep, an event or a retry backoff, or dropped after a cancel).
    """

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self._seen_runs = worker.finished_runs
        self._seen = finished_by_status()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.report()

    def report(self) -> None:
        runs, counts = self.worker.finished_runs, finished_by_status()
        handled = runs - self._seen_runs
        if handled <= 0:
            return
        completed = counts["completed"] - self._seen["completed"]
        failed = counts["failed"] - self._seen["failed"]
        suspended = max(0, handled - completed - failed)
        self._seen_runs, self._seen = runs, counts
        parts = [f"{completed} completed", f"{failed} failed", f"{suspended} suspended"]
        log.info(
            "worker: %d runs handled in the last %gs (%s); %d since start",
            handled,
            self.interval,
            ", ".join(parts),
            runs,
        )
