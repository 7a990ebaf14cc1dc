"""Health checks, metrics, the OpenAPI document, and JSON errors for routing failures."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from dataflows.http.openapi import openapi_document
from tests.http.conftest import Harness
from tests.http.test_events import assert_error


async def test_healthz_and_readyz(api: Harness) -> None:
    live = await api.client.get("/healthz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_metrics_expose_engine_counters_and_queue_depth(api: Harness) -> None:
    for i in range(3):
        await api.client.post("/workflows/waits/runs", json={"idempotency_key": f"k{i}"})
    await api.client.post("/events", json={"name": "test/order"})
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "dataflows_runs_started",
        "dataflows_runs_finished",
        "dataflows_steps",
        "dataflows_step_duration_seconds",
        "dataflows_webhook_verifications_failed",
        "dataflows_queue_depth",
        "dataflows_store_up",
    ):
        assert name in families, name
    depth = {
        (s.labels["workflow"], s.labels["status"]): s.value
        for s in families["dataflows_queue_depth"].samples
    }
    assert depth[("waits", "queued")] == 3
    assert depth[("echo", "queued")] == 1
    assert depth[("fails", "queued")] == 0  # every workflow and unfinished status is a series
    assert depth[("fails", "waiting")] == 0
    assert families["dataflows_store_up"].samples[0].value == 1
    started = families["dataflows_runs_started"].samples
    assert any(s.labels == {"workflow": "waits"} and s.value >= 3 for s in started)


async def test_unknown_paths_and_methods_answer_json(api: Harness) -> None:
    assert_error(await api.client.get("/nope"), 404, "not_found")
    response = await api.client.delete("/runs")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_the_openapi_document_describes_every_route(api: Harness) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    served = set()
    for route in api.api.routes:
        assert isinstance(route, Route) and route.methods is not None
        # path_format: the path as documented, "{schedule_id:path}" written "{schedule_id}"
        served |= {(method, route.path_format) for method in route.methods - {"HEAD"}}
    assert documented == served
    for method, path in documented:
        op = document["paths"][path][method.lower()]
        assert op["responses"], (method, path)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_every_reference_in_the_document_resolves() -> None:
    for secured in (False, True):
        document: dict[str, Any] = openapi_document(secured=secured)
        text = repr(document)
        for name in re.findall(r"#/components/schemas/(\w+)", text):
            assert name in document["components"]["schemas"], name


async def test_a_bug_is_a_logged_json_500(api: Harness, monkeypatch: Any, caplog: Any) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.app, "get_run", broken)
    response = await api.client.get("/runs/abc")
    assert_error(response, 500, "internal_error")
    assert "a bug" not in response.text
    assert any("unhandled error" in r.message for r in caplog.records)
