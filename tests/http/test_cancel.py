"""``POST /runs/cancel``: bulk cancel by workflow, status and creation time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.http.conftest import Harness
from tests.http.test_events import assert_error


async def test_bulk_cancel_by_workflow_and_status(api: Harness) -> None:
    for n in range(3):
        await api.app.send("test/order", {"n": n})
    waits = await api.app.start("waits")
    response = await api.client.post(
        "/runs/cancel", json={"workflow_id": "echo", "status": ["queued", "waiting"]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"cancelled": 3}
    assert {r.status for r in await api.app.list_runs("echo")} == {"cancelled"}
    assert (await api.app.get_run(waits)).status == "queued"
    again = await api.client.post("/runs/cancel", json={"workflow_id": "echo"})
    assert again.json() == {"cancelled": 0}


async def test_bulk_cancel_by_creation_time(api: Harness) -> None:
    first = await api.app.start("echo")
    run = await api.app.get_run(first)
    await asyncio.sleep(0.02)
    later = await api.app.start("echo")
    # Between the two (a datetime rounds the stored time to microseconds).
    cut = (await api.app.get_run(later)).created_at - timedelta(milliseconds=5)
    response = await api.client.post(
        "/runs/cancel", json={"status": "queued", "created_after": cut.isoformat()}
    )
    assert response.json() == {"cancelled": 1}, response.text
    assert (await api.app.get_run(first)).status == "queued"
    assert (await api.app.get_run(later)).status == "cancelled"
    response = await api.client.post(
        "/runs/cancel", json={"created_before": "2999-01-01T00:00:00Z"}
    )
    assert response.json() == {"cancelled": 1}
    assert (await api.app.get_run(first)).status == "cancelled"
    assert run.created_at < cut


async def test_bulk_cancel_needs_a_filter(api: Harness) -> None:
    await api.app.start("echo")
    for body in ({}, {"workflow_id": None}):
        assert_error(await api.client.post("/runs/cancel", json=body), 400, "bad_request")
    assert_error(await api.client.post("/runs/cancel"), 400, "bad_request")
    assert {r.status for r in await api.app.list_runs()} == {"queued"}


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"workflow": "echo"},
        {"workflow_id": 7},
        {"workflow_id": ""},
        {"status": "completed"},
        {"status": []},
        {"status": ["queued", "failed"]},
        {"created_after": "yesterday"},
        {"created_after": "2026-01-01T00:00:00"},
        {"created_before": 1700000000},
    ],
)
async def test_bulk_cancel_refuses_bad_filters(api: Harness, body: Any) -> None:
    await api.app.start("echo")
    assert_error(await api.client.post("/runs/cancel", json=body), 422, "invalid_request")
    assert {r.status for r in await api.app.list_runs()} == {"queued"}


async def test_bulk_cancel_is_in_the_openapi_document(api: Harness) -> None:
    document = (await api.client.get("/openapi.json")).json()
    operation = document["paths"]["/runs/cancel"]["post"]
    assert operation["operationId"] == "cancelRuns"
    assert {"200", "400", "422", "503"} <= set(operation["responses"])
