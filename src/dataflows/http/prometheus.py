"""``GET /metrics``: the engine's counters, and the queue depth read from the database.

The counters (:mod:`dataflows.metrics`) count what this process did (what all the server
processes did, under ``dataflows serve --workers N``). Queue depth — unfinished runs
by workflow and status, and runs waiting for each shared step budget — is read from the store
when scraped, so it is the same whichever process serves it. The store is async, so the counts are gathered in the route and rendered from a
snapshot; while the database is unreachable the counters are still served, with
``dataflows_store_up 0`` and no queue depth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from dataflows import metrics as engine_metrics
from dataflows.app import Dataflows
from dataflows.errors import StoreUnavailable
from dataflows.http.context import ApiContext, context
from dataflows.workflow import Workflow

__all__ = ["QUEUE_STATUSES", "metrics"]

#: Unfinished statuses, always reported (as 0 when empty) so alerts see a series, not a gap.
QUEUE_STATUSES = ("queued", "running", "waiting")

#: What a scrape reads from the database: queue depth ``(workflow, status, count)``, runs a
#: flow limit holds back ``(workflow, limit, count)`` and runs waiting for a unit of a budget
#: ``(wait_reason, count)``.
Counts = tuple[list[tuple[str, str, int]], list[tuple[str, str, int]], list[tuple[str, int]]]


#: How long a scrape waits for the queue depth before answering without it.
QUEUE_DEPTH_WAIT_SECONDS = 0.25


async def metrics(request: Request) -> Response:
    ctx = context(request)
    counts = await _queue_counts(ctx)
    snapshot = CollectorRegistry(auto_describe=False)
    registry = ctx.app.registry
    limited = [(w.id, kind) for w in registry for kind in _limits(w)]
    snapshot.register(_Snapshot(counts, [w.id for w in registry], limited, list(registry.budgets)))
    body = generate_latest(engine_metrics.registry()) + generate_latest(snapshot)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _limits(workflow: Workflow) -> list[str]:
    """The flow limits of a workflow that can hold runs back, as ``dataflows_runs_held`` names
    them."""
    kinds = {
        "concurrency": workflow.concurrency,
        "throttle": workflow.throttle,
        "debounce": workflow.debounce,
    }
    return [kind for kind, option in kinds.items() if option is not None]


async def _queue_counts(ctx: ApiContext) -> Counts | None:
    """The queue depth, if the database gives it within a moment. A scrape never waits out an
    outage: one read at a time is in flight, and a scrape that finds it slow answers without
    it (``dataflows_store_up 0``)."""
    if ctx.depth_read is None or ctx.depth_read.done():
        ctx.depth_read = asyncio.ensure_future(_read_counts(ctx.app))
    try:
        return await ctx.store(ctx.depth_read, QUEUE_DEPTH_WAIT_SECONDS)
    except StoreUnavailable:
        return None


async def _read_counts(app: Dataflows) -> Counts:
    await app.open()
    counts = await app.store.run_counts()
    held = await app.store.held_counts()
    # Only an app that declares budgets looks for runs waiting for them.
    waits = await app.store.rate_limited_waits() if app.registry.budgets else []
    return counts, held, waits


class _Snapshot(Collector):
    """Queue depth, held runs, budget waits and store reachability as read for this scrape."""

    def __init__(
        self,
        counts: Counts | None,
        workflow_ids: Iterable[str],
        limited: Iterable[tuple[str, str]] = (),
        budgets: Iterable[str] = (),
    ) -> None:
        self.counts = counts
        self.workflow_ids = sorted(workflow_ids)
        self.limited = sorted(limited)
        self.budgets = sorted(budgets)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dataflows_store_up", "Whether the database answered this scrape.")
        up.add_metric([], 0.0 if self.counts is None else 1.0)
        yield up
        if self.counts is not None:
            yield self._depth(self.counts[0])
            yield self._held(self.counts[1])
            if self.budgets:
                yield self._budget_waits(self.counts[2])

    def _held(self, counts: list[tuple[str, str, int]]) -> GaugeMetricFamily:
        held = dict.fromkeys(self.limited, 0) | {(w, kind): n for w, kind, n in counts}
        gauge = GaugeMetricFamily(
            "dataflows_runs_held",
            "Runs a flow limit holds back now (queued over a concurrency limit or a throttle, "
            "pending a debounce), by workflow and limit.",
            labels=["workflow", "limit"],
        )
        for (workflow, kind), count in sorted(held.items()):
            gauge.add_metric([workflow, kind], float(count))
        return gauge

    def _budget_waits(self, waits: list[tuple[str, int]]) -> GaugeMetricFamily:
        """Runs waiting per declared budget, read from their wait reasons
        (``rate_limit <budget>/<key> (<step>)``; the longest budget name that fits wins)."""
        by_budget = dict.fromkeys(self.budgets, 0)
        longest_first = sorted(self.budgets, key=len, reverse=True)
        for reason, count in waits:
            for name in longest_first:
                if reason.startswith(f"rate_limit {name}/"):
                    by_budget[name] += count
                    break
        gauge = GaugeMetricFamily(
            "dataflows_budget_waiting",
            "Runs waiting for a unit of a shared step budget, read from the database.",
            labels=["budget"],
        )
        for name, count in sorted(by_budget.items()):
            gauge.add_metric([name], float(count))
        return gauge

    def _depth(self, counts: list[tuple[str, str, int]]) -> GaugeMetricFamily:
        depth = {(w, s): 0 for w in self.workflow_ids for s in QUEUE_STATUSES}
        depth.update({(w, s): n for w, s, n in counts})
        gauge = GaugeMetricFamily(
            "dataflows_queue_depth",
            "Unfinished runs by workflow and status, read from the database.",
            labels=["workflow", "status"],
        )
        for (workflow, status), count in sorted(depth.items()):
            gauge.add_metric([workflow, status], float(count))
        return gauge
