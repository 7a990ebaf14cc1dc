"""Prometheus metrics the engine keeps (served by the HTTP API's ``/metrics``).

Counters live in this process — or, when ``PROMETHEUS_MULTIPROC_DIR`` names a folder (``dataflows
serve --workers N`` sets one up), in files there shared by the server processes, so a scrape
answered by any of them counts what all of them did. Queue depth is read from the database when
scraped, so it is the same whichever process serves it.

They are ``prometheus_client`` metrics in its default registry, made as soon as anything in the
process imports ``prometheus_client`` (``/metrics`` does, and so does code that serves or reads
the registry itself), or the multiprocess folder is set. Until then each series counts in plain
numbers, which become its starting values: importing ``prometheus_client`` costs a process about
2 MiB (its exposition code brings ``http.server``, ``wsgiref``, ``urllib.request`` and more),
which a worker that nothing scrapes need not carry.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import time
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    RUNS_STARTED: Counter
    RUNS_FINISHED: Counter
    STEPS: Counter
    STEP_DURATION: Histogram
    WEBHOOKS_REJECTED: Counter

#: The environment variable naming the folder server processes share their counters in.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

#: The upper bounds of ``dataflows_step_duration_seconds``'s buckets (``+Inf`` follows).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

#: Each metric by attribute: its name, help text and label names; ``STEP_DURATION`` is the
#: histogram, the others are counters.
DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "RUNS_STARTED": (
        "dataflows_runs_started",
        "Runs created (by events, starts and invokes).",
        ("workflow",),
    ),
    "RUNS_FINISHED": (
        "dataflows_runs_finished",
        "Runs finished by this process's workers.",
        ("workflow", "status"),
    ),
    "STEPS": (
        "dataflows_steps",
        "Step outcomes recorded by this process.",
        ("workflow", "kind", "status"),
    ),
    "STEP_DURATION": (
        "dataflows_step_duration_seconds",
        "Wall time of step.run attempts that succeeded.",
        ("workflow",),
    ),
    "WEBHOOKS_REJECTED": (
        "dataflows_webhook_verifications_failed",
        "Webhook requests whose signature or credentials did not verify.",
        ("source",),
    ),
}
HISTOGRAM = "STEP_DURATION"

#: The ``prometheus_client`` metrics by attribute, once made.
_made: dict[str, Any] | None = None
_series: dict[tuple[str, tuple[str, ...]], Series] = {}
#: Guards the plain numbers against a concurrent switch to the metrics (sync steps and the
#: blocking client count from threads).
_lock = threading.Lock()


class Series:
    """One labelled series of a metric: :meth:`inc` a counter's, :meth:`observe` the
    histogram's. Counts in plain numbers until the metric is made, then in the metric's child."""

    __slots__ = ("buckets", "child", "created", "labels", "metric", "value")

    def __init__(self, metric: str, labels: tuple[str, ...]) -> None:
        self.metric = metric
        self.labels = labels
        #: The ``prometheus_client`` child, once the metric is made.
        self.child: Any = None
        #: Until then: a counter's value, or the histogram's sum of observations.
        self.value = 0.0
        #: The histogram's observations per bucket (not cumulative), ``+Inf`` last.
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1) if metric == HISTOGRAM else None
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if self.child is None and not _ready():
            with _lock:
                if self.child is None:  # not made meanwhile by another thread
                    self.value += amount
                    return
        self.child.inc(amount)

    def observe(self, amount: float) -> None:
        if self.child is None and not _ready():
            with _lock:
                if self.child is None:
                    assert self.buckets is not None
                    self.value += amount
                    self.buckets[_bucket(amount)] += 1
                    return
        self.child.observe(amount)

    def _attach(self, metric: Any) -> None:
        """Move the plain numbers into the made metric's child (under the lock)."""
        child = metric.labels(*self.labels)
        child._created = self.created  # when this series began, as prometheus_client keeps it
        if self.buckets is None:
            if self.value:
                child.inc(self.value)
        else:  # prometheus_client has no public way to add to a histogram's buckets
            if self.value:
                child._sum.inc(self.value)
            for i, count in enumerate(self.buckets):
                if count:
                    child._buckets[i].inc(count)
        self.child = child


def _bucket(amount: float) -> int:
    for i, bound in enumerate(DURATION_BUCKETS):
        if amount <= bound:
            return i
    return len(DURATION_BUCKETS)


def series(metric: str, *labels: str) -> Series:
    """The series of ``metric`` (an attribute name, ``"STEPS"``) with these label values."""
    key = (metric, labels)
    found = _series.get(key)
    if found is None:
        with _lock:
            found = _series.get(key)
            if found is None:
                found = _series[key] = Series(metric, labels)
                if _made is not None:
                    found._attach(_made[metric])
    return found


def _ready() -> bool:
    """Whether the metrics are made: now, if ``prometheus_client`` is loaded though the import
    hook below did not see it (someone may read its default registry)."""
    if _made is not None:
        return True
    if "prometheus_client" in sys.modules:
        made()
        return True
    return False


def made() -> dict[str, Any]:
    """The ``prometheus_client`` metrics by attribute, made (and registered in its default
    registry) on first use with what the series counted so far."""
    global _made
    if _made is not None:
        return _made
    from prometheus_client import Counter, Histogram

    with _lock:
        if _made is None:
            metrics: dict[str, Any] = {
                attr: (
                    Histogram(name, doc, labels, buckets=DURATION_BUCKETS)
                    if attr == HISTOGRAM
                    else Counter(name, doc, labels)
                )
                for attr, (name, doc, labels) in DEFINITIONS.items()
            }
            for s in _series.values():
                s._attach(metrics[s.metric])
            _made = metrics
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_finder)
    return _made


class _MakeOnImport:
    """A ``sys.meta_path`` finder that makes the metrics right after ``prometheus_client`` is
    imported, so whoever imported it finds them in its default registry (with what was counted
    so far). It acts once, on that one name, and takes itself off the path."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != "prometheus_client":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_make(module: Any) -> None:
                exec_module(module)
                made()

            # This module's loader only (a spec has a loader of its own).
            spec.loader.exec_module = exec_then_make  # type: ignore[method-assign]
        return spec


_finder = _MakeOnImport()
if "prometheus_client" in sys.modules or os.environ.get(MULTIPROCESS_DIR):
    made()
else:
    sys.meta_path.insert(0, _finder)


def __getattr__(name: str) -> Any:
    if name in DEFINITIONS:
        return made()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def runs_started(workflow_ids: list[str]) -> None:
    for workflow_id in workflow_ids:
        series("RUNS_STARTED", workflow_id).inc()


def run_finished(workflow: str, status: str) -> None:
    series("RUNS_FINISHED", workflow, status).inc()


def step_outcomes(workflow: str, kind: str, status: str) -> Series:
    """The ``dataflows_steps`` series for these labels."""
    return series("STEPS", workflow, kind, status)


def step_durations(workflow: str) -> Series:
    """The ``dataflows_step_duration_seconds`` series of this workflow."""
    return series(HISTOGRAM, workflow)


def webhook_rejected(source: str) -> None:
    series("WEBHOOKS_REJECTED", source).inc()


def counts(metric: str) -> dict[tuple[str, ...], float]:
    """A counter's value per label values, as this process counted them."""
    if not _ready():
        with _lock:
            if _made is None:
                return {s.labels: s.value for s in _series.values() if s.metric == metric}
    names = DEFINITIONS[metric][2]
    return {
        tuple(sample.labels[n] for n in names): sample.value
        for family in made()[metric].collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def registry() -> CollectorRegistry:
    """Where ``/metrics`` reads the counters: this process's, or every server process's."""
    made()
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not os.environ.get(MULTIPROCESS_DIR):
        return REGISTRY
    shared = CollectorRegistry()
    MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
    return shared
