"""Prometheus metrics the engine keeps (served by the HTTP API's ``/metrics``).

Counters live in this process — or, when ``PROMETHEUS_MULTIPROC_DIR`` names a folder (``dataflows
serve --workers N`` sets one up), in files there shared by the server processes, so a scrape
answered by any of them counts what all of them did. Queue depth is read from the database when
scraped, so it is the same whichever process serves it.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

#: The environment variable naming the folder server processes share their counters in.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

RUNS_STARTED = Counter(
    "dataflows_runs_started", "Runs created (by events, starts and invokes).", ["workflow"]
)
RUNS_FINISHED = Counter(
    "dataflows_runs_finished", "Runs finished by this process's workers.", ["workflow", "status"]
)
STEPS = Counter(
    "dataflows_steps", "Step outcomes recorded by this process.", ["workflow", "kind", "status"]
)
STEP_DURATION = Histogram(
    "dataflows_step_duration_seconds",
    "Wall time of step.run attempts that succeeded.",
    ["workflow"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
WEBHOOKS_REJECTED = Counter(
    "dataflows_webhook_verifications_failed",
    "Webhook requests whose signature or credentials did not verify.",
    ["source"],
)


def runs_started(workflow_ids: list[str]) -> None:
    for workflow_id in workflow_ids:
        _started(workflow_id).inc()


@functools.cache
def _started(workflow: str) -> Counter:
    """The ``dataflows_runs_started`` child for a workflow (looked up once: starts are a hot
    path)."""
    return RUNS_STARTED.labels(workflow)


@functools.cache
def step_outcomes(workflow: str, kind: str, status: str) -> Counter:
    """The ``dataflows_steps`` child for these labels (looked up once: a step is a hot path)."""
    return STEPS.labels(workflow, kind, status)


@functools.cache
def step_durations(workflow: str) -> Histogram:
    """The ``dataflows_step_duration_seconds`` child for this workflow."""
    return STEP_DURATION.labels(workflow)


def registry() -> CollectorRegistry:
    """Where ``/metrics`` reads the counters: this process's, or every server process's."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return REGISTRY
    shared = CollectorRegistry()
    MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
    return shared
