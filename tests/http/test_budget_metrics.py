"""``/metrics`` counts the runs waiting for each shared step budget, read from the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import dataflows as df
from dataflows.records import Lease


async def budget_waiting(client: Any) -> dict[str, float] | None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    if "dataflows_budget_waiting" not in families:
        return None
    return {s.labels["budget"]: s.value for s in families["dataflows_budget_waiting"].samples}


async def test_runs_waiting_for_a_unit_are_counted_per_budget(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app()
    app.rate_limit("api", limit=1, period="1h")
    app.rate_limit("api/v2", limit=1, period="1h")
    app.rate_limit("idle", limit=1, period="1h")
    async with make_api(app=app) as h:
        assert await budget_waiting(h.client) == {"api": 0, "api/v2": 0, "idle": 0}
        now = time.time()
        for n in range(4):
            await app.start("waits", {"n": n})
        claimed = await app.store.claim_runs("w1", 4, 30.0, now)
        reasons = [
            "rate_limit api/a (call)",
            "rate_limit api/b (call)",
            "rate_limit api/v2/ (call)",
            "sleep nap",
        ]
        for run, reason in zip(claimed, reasons, strict=True):
            lease = Lease(run.id, run.lease_token)
            assert await app.store.suspend_run(lease, now + 3600, reason, now)
        assert await budget_waiting(h.client) == {"api": 2, "api/v2": 1, "idle": 0}


async def test_an_app_without_budgets_has_no_budget_gauge(make_api: Callable[..., Any]) -> None:
    async with make_api() as h:
        assert await budget_waiting(h.client) is None
