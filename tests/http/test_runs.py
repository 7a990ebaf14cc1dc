"""Starting, listing, inspecting, cancelling and retrying runs over HTTP."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import Any

import jsonschema_rs
import pytest

import dataflows as df
from dataflows.http.openapi import openapi_document
from dataflows.http.views import callable_name
from tests.http.conftest import Harness
from tests.http.test_events import JSON, assert_error


async def finished(app: df.Dataflows, run_id: str) -> df.Run:
    return await app.wait_for_run(run_id, timeout=15)


def fast_worker(app: df.Dataflows) -> Any:
    return app.worker(concurrency=4, poll_interval=0.02)


async def test_start_a_run_and_read_it_back_with_its_steps(api: Harness) -> None:
    response = await api.client.post("/workflows/two-steps/runs", json={"data": {"x": 40}})
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert (await api.app.get_run(run_id)).status == "queued"  # committed before the answer

    async with fast_worker(api.app):
        await finished(api.app, run_id)
    response = await api.client.get(f"/runs/{run_id}")
    assert response.status_code == 200
    run = response.json()
    assert run["id"] == run_id and run["workflow_id"] == "two-steps"
    assert run["status"] == "completed" and run["result"] == 42
    assert run["event"]["data"] == {"x": 40} and run["error"] is None
    assert [(s["key"], s["name"], s["kind"], s["status"]) for s in run["steps"]] == [
        ("add", "add", "run", "completed"),
        ("add#2", "add", "run", "completed"),
    ]
    first = run["steps"][0]
    assert first["output"] == 41 and first["attempts"] == 1 and first["error"] is None
    assert first["duration_seconds"] >= 0
    for field in ("started_at", "completed_at"):
        assert datetime.fromisoformat(first[field]).tzinfo is not None
    assert run["created_at"].endswith("Z") and run["completed_at"] is not None
    # The version of the code it started with: the fingerprint GET /workflows shows.
    workflows = {w["id"]: w for w in (await api.client.get("/workflows")).json()["workflows"]}
    assert run["version"] == workflows["two-steps"]["version"]
    assert isinstance(run["version"], str) and len(run["version"]) == 12


async def test_start_without_a_body_and_with_an_idempotency_key(api: Harness) -> None:
    bare = await api.client.post("/workflows/echo/runs")
    assert bare.status_code == 202, bare.text
    run = await api.app.get_run(bare.json()["run_id"])
    assert dict(run.event.data) == {}

    body = {"data": {"a": 1}, "idempotency_key": "order-7"}
    first = await api.client.post("/workflows/echo/runs", json=body)
    again = await api.client.post("/workflows/echo/runs", json=body)
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]


async def test_start_refuses_unknown_workflows_and_bad_bodies(api: Harness) -> None:
    unknown = await api.client.post("/workflows/nope/runs", json={})
    assert_error(unknown, 404, "unknown_workflow")
    bodies: list[Any] = [{"data": 1}, {"extra": 1}, {"idempotency_key": ""}, [], "x"]
    for body in bodies:
        assert_error(
            await api.client.post("/workflows/echo/runs", json=body), 422, "invalid_request"
        )
    form = await api.client.post(
        "/workflows/echo/runs",
        content=b"a=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(form, 415, "unsupported_media_type")
    untyped = await api.client.post("/workflows/echo/runs", content=b'{"data":{}}')
    assert_error(untyped, 415, "unsupported_media_type")
    bad = await api.client.post("/workflows/echo/runs", content=b'{"data":', headers=JSON)
    assert_error(bad, 400, "invalid_json")
    nul = b'{"data":{"a":"\\u0000"}}'
    assert_error(
        await api.client.post("/workflows/echo/runs", content=nul, headers=JSON),
        422,
        "invalid_request",
    )
    assert await api.app.list_runs() == []


async def test_list_runs_pages_through_everything_once(api: Harness) -> None:
    started = [
        (await api.client.post("/workflows/echo/runs", json={"data": {"i": i}})).json()["run_id"]
        for i in range(7)
    ]
    await api.client.post("/workflows/two-steps/runs", json={})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"workflow_id": "echo", "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.client.get("/runs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["runs"]) <= 3
        seen += [r["id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(started) and len(seen) == len(set(seen))
    assert seen == list(reversed(started))  # newest first
    every = (await api.client.get("/runs")).json()
    assert len(every["runs"]) == 8 and every["next_cursor"] is None
    summary = every["runs"][0]
    assert summary["workflow_id"] == "two-steps" and summary["status"] == "queued"
    assert "steps" not in summary and "data" not in summary["event"]


async def test_list_runs_filters_by_status(api: Harness) -> None:
    ok = (await api.client.post("/workflows/echo/runs", json={})).json()["run_id"]
    bad = (await api.client.post("/workflows/fails/runs", json={})).json()["run_id"]
    async with fast_worker(api.app):
        await finished(api.app, ok)
        await finished(api.app, bad)
    failed = (await api.client.get("/runs", params={"status": "failed"})).json()["runs"]
    assert [r["id"] for r in failed] == [bad]
    assert failed[0]["error"]["type"]
    completed = (await api.client.get("/runs?status=completed&workflow_id=echo")).json()["runs"]
    assert [r["id"] for r in completed] == [ok]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "status=done",
        "workflow_id=",
        "workflow_id=a%00b",
        "cursor=garbage",
        "cursor=1e999~abc",
        "cursor=123.4~",
        "workflow=echo",
    ],
)
async def test_list_runs_refuses_bad_queries(api: Harness, query: str) -> None:
    assert_error(await api.client.get(f"/runs?{query}"), 422, "invalid_request")


async def test_unknown_runs_are_404(api: Harness) -> None:
    for run_id in ("nope", "a%00b", "x" * 300):
        assert_error(await api.client.get(f"/runs/{run_id}"), 404, "run_not_found")
        assert_error(await api.client.post(f"/runs/{run_id}/cancel"), 404, "run_not_found")
        assert_error(await api.client.post(f"/runs/{run_id}/retry"), 404, "run_not_found")


async def test_cancel_then_retry(api: Harness) -> None:
    run_id = (await api.client.post("/workflows/waits/runs", json={})).json()["run_id"]
    retry_queued = await api.client.post(f"/runs/{run_id}/retry")
    assert_error(retry_queued, 409, "invalid_run_state")

    cancel = await api.client.post(f"/runs/{run_id}/cancel")
    assert cancel.status_code == 202
    assert cancel.json() == {"run_id": run_id, "status": "cancelled"}
    assert (await api.app.get_run(run_id)).status == "cancelled"
    again = await api.client.post(f"/runs/{run_id}/cancel")  # idempotent
    assert again.status_code == 202

    retry = await api.client.post(f"/runs/{run_id}/retry")
    assert retry.status_code == 202
    assert retry.json() == {"run_id": run_id, "status": "queued"}
    assert (await api.app.get_run(run_id)).status == "queued"


async def test_retry_a_failed_run_and_cancel_a_finished_one(api: Harness) -> None:
    bad = (await api.client.post("/workflows/fails/runs", json={})).json()["run_id"]
    ok = (await api.client.post("/workflows/echo/runs", json={})).json()["run_id"]
    async with fast_worker(api.app):
        assert (await finished(api.app, bad)).status == "failed"
        await finished(api.app, ok)
        failed = (await api.client.get(f"/runs/{bad}")).json()
        assert failed["status"] == "failed"
        assert failed["steps"][0]["status"] == "failed" and failed["steps"][0]["error"]
        retry = await api.client.post(f"/runs/{bad}/retry")
        assert retry.status_code == 202
        await asyncio.sleep(0)
        assert (await finished(api.app, bad)).status == "failed"  # it ran again, and failed again
    assert_error(await api.client.post(f"/runs/{ok}/cancel"), 409, "invalid_run_state")
    assert (await api.app.get_run(ok)).status == "completed"
    assert_error(await api.client.post(f"/runs/{ok}/retry"), 409, "invalid_run_state")


async def test_list_workflows_with_their_triggers(api: Harness) -> None:
    response = await api.client.get("/workflows")
    assert response.status_code == 200
    workflows = {w["id"]: w for w in response.json()["workflows"]}
    assert sorted(workflows) == ["echo", "fails", "two-steps", "waits"]
    assert workflows["echo"]["triggers"] == [
        {"type": "event", "event": "test/order"},
        {"type": "event", "event": "demo/*"},
    ]
    assert workflows["two-steps"]["triggers"] == []
    assert workflows["two-steps"]["retries"]["retries"] == 0
    assert workflows["echo"]["timeout_seconds"] is None
    assert workflows["echo"]["cancel_on"] == []


async def test_list_workflows_with_their_cancel_on_triggers(api: Harness) -> None:
    @api.app.workflow(
        "fulfil",
        trigger=df.on_event("shop/order.created"),
        cancel_on=[
            df.on_event("shop/order.cancelled", match="data.order.id"),
            df.on_event("shop/closed"),
        ],
    )
    async def fulfil(event: df.Event, step: df.Step) -> Any: ...

    response = await api.client.get("/workflows")
    assert response.status_code == 200
    workflows = {w["id"]: w for w in response.json()["workflows"]}
    assert workflows["fulfil"]["triggers"] == [{"type": "event", "event": "shop/order.created"}]
    assert workflows["fulfil"]["cancel_on"] == [
        {"type": "event", "event": "shop/order.cancelled", "match": "data.order.id"},
        {"type": "event", "event": "shop/closed", "match": None},
    ]
    # As the OpenAPI document describes it (schemathesis sees only workflows without cancel_on).
    document = openapi_document(secured=False)
    schema = {"components": document["components"], "$ref": "#/components/schemas/Workflows"}
    jsonschema_rs.validate(schema, response.json())


def vip_priority(event: df.Event) -> int:
    return 10 if event.data.get("vip") else 0


async def test_list_workflows_with_every_flow_control_option(api: Harness) -> None:
    @api.app.workflow(
        "limited",
        trigger=[df.on_event("shop/order.created"), df.cron("@daily", tz="Europe/Berlin")],
        concurrency=df.Concurrency(limit=2, key="data.shop"),
        throttle=df.Throttle(limit=10, period="1m", key="data.shop"),
        rate_limit=df.RateLimit(limit=5, period="1h", key=lambda event: event.data["order"]),
        debounce=df.Debounce(period="30s", key="data.item", max_wait="5m"),
        priority=vip_priority,
        idempotency="data.invoice_id",
        start_timeout="90s",
    )
    async def limited(event: df.Event, step: df.Step) -> Any: ...

    @api.app.workflow(
        "whole",
        concurrency=3,
        rate_limit=df.RateLimit(limit=1, period=60),
        debounce=df.Debounce(period=2),
        priority=-5,
        idempotency=lambda event: event.id,
    )
    async def whole(event: df.Event, step: df.Step) -> Any: ...

    response = await api.client.get("/workflows")
    assert response.status_code == 200
    workflows = {w["id"]: w for w in response.json()["workflows"]}
    limited_view = workflows["limited"]
    assert limited_view["triggers"] == [
        {"type": "event", "event": "shop/order.created"},
        {"type": "cron", "expr": "@daily", "tz": "Europe/Berlin", "catch_up": "latest"},
    ]
    here = __name__
    assert {k: v for k, v in limited_view.items() if k not in NOT_FLOW_CONTROL} == {
        "concurrency": {"limit": 2, "key": "data.shop"},
        "throttle": {"limit": 10, "period_seconds": 60.0, "key": "data.shop"},
        "rate_limit": {
            "limit": 5,
            "period_seconds": 3600.0,
            "key": {
                "callable": f"{here}.test_list_workflows_with_every_flow_control_option."
                "<locals>.<lambda>"
            },
        },
        "debounce": {"period_seconds": 30.0, "key": "data.item", "max_wait_seconds": 300.0},
        "priority": {"callable": f"{here}.vip_priority"},
        "idempotency": "data.invoice_id",
        "start_timeout_seconds": 90.0,
    }
    whole_view = workflows["whole"]
    assert whole_view["concurrency"] == {"limit": 3, "key": None}
    assert whole_view["rate_limit"] == {"limit": 1, "period_seconds": 60.0, "key": None}
    assert whole_view["debounce"] == {"period_seconds": 2.0, "key": None, "max_wait_seconds": None}
    assert whole_view["priority"] == -5
    assert whole_view["idempotency"]["callable"].endswith("<locals>.<lambda>")
    # A workflow without any: every option null.
    assert {k: v for k, v in workflows["echo"].items() if k not in NOT_FLOW_CONTROL} == {
        "concurrency": None,
        "throttle": None,
        "rate_limit": None,
        "debounce": None,
        "priority": None,
        "idempotency": None,
        "start_timeout_seconds": None,
    }
    # As the OpenAPI document describes it (schemathesis sees only workflows without options).
    document = openapi_document(secured=False)
    schema = {"components": document["components"], "$ref": "#/components/schemas/Workflows"}
    jsonschema_rs.validate(schema, response.json())


NOT_FLOW_CONTROL = {"id", "triggers", "retries", "timeout_seconds", "cancel_on", "version"}


def test_a_callable_object_is_named_by_its_class() -> None:
    class Keyer:
        def __call__(self, event: df.Event) -> str:
            return event.id

    assert callable_name(functools.partial(vip_priority)) == "functools.partial"
    assert callable_name(Keyer()) == f"{__name__}.{Keyer.__qualname__}"


async def test_stored_surrogates_are_served_as_escapes(api: Harness) -> None:
    @api.app.workflow("odd-output")
    async def odd(event: df.Event, step: df.Step) -> Any:
        return await step.run("s", lambda: "lone \ud800 surrogate")

    run_id = await api.app.start("odd-output", {})
    async with fast_worker(api.app):
        await finished(api.app, run_id)
    response = await api.client.get(f"/runs/{run_id}")
    assert response.status_code == 200
    assert b"\\ud800" in response.content
    assert response.json()["result"] == "lone \ud800 surrogate"


async def test_export_a_run_history(api: Harness) -> None:
    response = await api.client.post("/workflows/two-steps/runs", json={"data": {"x": 1}})
    run_id = response.json()["run_id"]
    async with fast_worker(api.app):
        await finished(api.app, run_id)
    response = await api.client.get(f"/runs/{run_id}/export")
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["format"] == "dataflows.history/1"
    assert (history["run"]["id"], history["run"]["workflow_id"]) == (run_id, "two-steps")
    assert history["event"]["data"] == {"x": 1}
    assert [(s["key"], s["kind"], s["output"]) for s in history["steps"]] == [
        ("add", "run", 2),
        ("add#2", "run", 3),
    ]
    assert_error(await api.client.get("/runs/nope/export"), 404, "run_not_found")
