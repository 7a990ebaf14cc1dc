"""``GET /metrics``: the engine's counters, and the queue depth read from the database.

The counters (:mod:`dataflows.metrics`) count what this process did (what all the server
processes did, under ``dataflows serve --workers N``). Queue depth — unfinished runs
by workflow and status — is read from the store when scraped, so it is the same whichever process
serves it. The store is async, so the counts are gathered in the route and rendered from a
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

__all__ = ["QUEUE_STATUSES", "metrics"]

#: Unfinished statuses, always reported (as 0 when empty) so alerts see a series, not a gap.
QUEUE_STATUSES = ("queued", "running", "waiting")

#: Queue depth ``(workflow, status, count)`` and held runs ``(workflow, count)``.
Counts = tuple[list[tuple[str, str, int]], list[tuple[str, int]]]


#: How long a scrape waits for the queue depth before answering without it.
QUEUE_DEPTH_WAIT_SECONDS = 0.25


async def metrics(request: Request) -> Response:
    ctx = context(request)
    counts = await _queue_counts(ctx)
    snapshot = CollectorRegistry(auto_describe=False)
    limited = [w.id for w in ctx.app.registry if w.concurrency is not None]
    snapshot.register(_Snapshot(counts, [w.id for w in ctx.app.registry], limited))
    body = generate_latest(engine_metrics.registry()) + generate_latest(snapshot)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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
    return (await app.store.run_counts(), await app.store.held_counts())


class _Snapshot(Collector):
    """Queue depth and store reachability as read for this scrape."""

    def __init__(
        self, counts: Counts | None, workflow_ids: Iterable[str], limited: Iterable[str] = ()
    ) -> None:
        self.counts = counts
        self.workflow_ids = sorted(workflow_ids)
        self.limited = sorted(limited)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dataflows_store_up", "Whether the database answered this scrape.")
        up.add_metric([], 0.0 if self.counts is None else 1.0)
        yield up
        if self.counts is not None:
            yield self._depth(self.counts[0])
            yield self._held(self.counts[1])

    def _held(self, counts: list[tuple[str, int]]) -> GaugeMetricFamily:
        held = dict.fromkeys(self.limited, 0) | dict(counts)
        gauge = GaugeMetricFamily(
            "dataflows_runs_held",
            "Queued runs a flow limit holds back now, by workflow and limit.",
            labels=["workflow", "limit"],
        )
        for workflow, count in sorted(held.items()):
            gauge.add_metric([workflow, "concurrency"], float(count))
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
