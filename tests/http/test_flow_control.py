"""Flow control over HTTP: a held run says why, ``/metrics`` counts held runs, skipped starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import dataflows as df
from dataflows.records import FlowLimit


async def test_held_runs_show_why_and_are_counted_in_metrics(
    new_app: Callable[..., df.Dataflows], make_api: Any
) -> None:
    app = new_app()

    @app.workflow("one-at-a-time", trigger=df.on_event("test/held"), concurrency=1)
    async def one(event: df.Event, step: df.Step) -> None: ...

    @app.workflow(
        "once", trigger=df.on_event("test/held"), rate_limit=df.RateLimit(1, "1h", key="data.k")
    )
    async def once(event: df.Event, step: df.Step) -> None: ...

    async with make_api(app=app) as api:
        await api.app.open()
        await api.app.store.sync_flow_limits([FlowLimit("one-at-a-time", 1)], 0.0)
        first = await api.client.post("/events", json={"name": "test/held", "data": {"k": 1}})
        second = await api.client.post("/events", json={"name": "test/held", "data": {"k": 1}})
        assert first.json()["events"][0]["skipped"] == []
        assert second.json()["events"][0]["skipped"] == [
            {"workflow_id": "once", "reason": "rate limit 1: 1 per 3600s"}
        ]
        ids = [i for r in (first, second) for i in r.json()["run_ids"]]
        held_ids = []
        for run_id in ids:
            run = (await api.client.get(f"/runs/{run_id}")).json()
            if run["workflow_id"] == "one-at-a-time":
                held_ids.append(run_id)
        # Nothing runs yet: the first run is not held (a slot is free), so the gauge is 0.
        text = (await api.client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        [sample] = [
            s
            for s in families["dataflows_runs_held"].samples
            if s.labels["workflow"] == "one-at-a-time"
        ]
        assert sample.labels["limit"] == "concurrency" and sample.value == 0
        claimed = await api.app.store.claim_runs("w", 10, 30.0, api.app.clock.now())
        assert sorted(c.workflow_id for c in claimed) == ["once", "one-at-a-time"]
        held = [i for i in held_ids if i not in {c.id for c in claimed}]
        body = (await api.client.get(f"/runs/{held[0]}")).json()
        assert (body["status"], body["wait_reason"]) == ("queued", "concurrency one-at-a-time")
        text = (await api.client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        values = {s.labels["workflow"]: s.value for s in families["dataflows_runs_held"].samples}
        assert values == {"one-at-a-time": 1.0}


async def test_throttled_and_debounced_runs_are_counted_by_their_limit(
    new_app: Callable[..., df.Dataflows], make_api: Any
) -> None:
    app = new_app()

    @app.workflow(
        "throttled", trigger=df.on_event("test/held"), throttle=df.Throttle(1, "1h", key="data.k")
    )
    async def throttled(event: df.Event, step: df.Step) -> None: ...

    @app.workflow(
        "debounced", trigger=df.on_event("test/held"), debounce=df.Debounce("1h", key="data.k")
    )
    async def debounced(event: df.Event, step: df.Step) -> None: ...

    async def held() -> dict[tuple[str, str], float]:
        text = (await api.client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = families["dataflows_runs_held"].samples
        return {(s.labels["workflow"], s.labels["limit"]): s.value for s in samples}

    async with make_api(app=app) as api:
        await api.app.open()
        await api.app.store.sync_flow_limits(app.registry.flow_limits(), 0.0)
        assert await held() == {("debounced", "debounce"): 0.0, ("throttled", "throttle"): 0.0}
        for k in (1, 1, 1, 2):
            await api.client.post("/events", json={"name": "test/held", "data": {"k": k}})
        claimed = await api.app.store.claim_runs("w", 10, 30.0, api.app.clock.now())
        # One start per key within the hour; the other two runs of key 1 are held; one
        # debounced run is pending per key.
        assert sorted(c.workflow_id for c in claimed) == ["throttled", "throttled"]
        assert await held() == {("debounced", "debounce"): 2.0, ("throttled", "throttle"): 2.0}
