"""Timestamps a peer's workflow code records in this process, outside its durable state.

Temporal's workflows run in its sandbox, which imports this module passed through (so they share
these dicts with the measure) and calls in here with the sandbox's restrictions lifted.
"""

from __future__ import annotations

import time

#: run index -> time.perf_counter() when the workflow went on after its wait
RESUMED: dict[int, float] = {}
#: run index -> time.time() when a 1 s sleep should end / when it ended
INTENDED: dict[int, float] = {}
WOKE: dict[int, float] = {}
#: workflows that reached their wait / finished (memory measure's worker)
READY: set[str] = set()
DONE: set[str] = set()


def resumed(i: int) -> None:
    RESUMED.setdefault(i, time.perf_counter())


def sleep_started(i: int, seconds: float) -> None:
    INTENDED.setdefault(i, time.time() + seconds)


def woke(i: int) -> None:
    WOKE.setdefault(i, time.time())
