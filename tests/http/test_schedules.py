"""Schedules over HTTP: listed with their next tick, paused and resumed, unknown ids answered 404
in the API's error shape; the same key as the other data routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette

import dataflows as df
from dataflows.http.context import ApiContext
from tests.http.conftest import Harness
from tests.http.test_events import assert_error

T0 = datetime(2025, 5, 5, 0, 0, 1, tzinfo=UTC).timestamp()


def scheduled_app(new_app: Callable[..., df.Dataflows]) -> df.Dataflows:
    app = new_app(clock=df.ManualClock(T0))

    @app.workflow(
        "reports/nightly",
        trigger=[df.cron("30 2 * * *", tz="Europe/Berlin"), df.cron("@hourly", catch_up="all")],
    )
    async def nightly(event: df.Event, step: df.Step) -> None:
        return None

    return app


async def test_list_pause_and_resume(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = scheduled_app(new_app)
    async with make_api(app=app, api_keys=["k"]) as api:
        h: Harness = api
        auth = {"Authorization": "Bearer k"}
        assert (await h.client.get("/schedules")).status_code == 401
        empty = await h.client.get("/schedules", headers=auth)
        assert empty.status_code == 200 and empty.json() == {"schedules": []}

        async with app.worker(poll_interval=0.02):  # a worker writes the code's schedules
            pass
        response = await h.client.get("/schedules", headers=auth)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "schedules": [
                {
                    "id": "reports/nightly:0",
                    "workflow_id": "reports/nightly",
                    "expr": "30 2 * * *",
                    "tz": "Europe/Berlin",
                    "catch_up": "latest",
                    "next_at": "2025-05-05T00:30:00Z",  # 02:30 in Berlin (CEST)
                    "paused": False,
                },
                {
                    "id": "reports/nightly:1",
                    "workflow_id": "reports/nightly",
                    "expr": "@hourly",
                    "tz": "UTC",
                    "catch_up": "all",
                    "next_at": "2025-05-05T01:00:00Z",
                    "paused": False,
                },
            ]
        }

        # The id holds the workflow's "/": the rest of the path is the id.
        paused = await h.client.post("/schedules/reports/nightly:1/pause", headers=auth)
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True and paused.json()["next_at"] is None
        again = await h.client.post("/schedules/reports/nightly:1/pause", headers=auth)
        assert again.status_code == 200 and again.json()["paused"] is True
        assert [s.paused for s in await app.list_schedules()] == [False, True]

        app.clock.set(T0 + 3 * 3600)  # type: ignore[attr-defined]
        resumed = await h.client.post("/schedules/reports/nightly:1/resume", headers=auth)
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["paused"] is False
        assert resumed.json()["next_at"] == "2025-05-05T04:00:00Z"  # ticks while paused skipped

        for path in ("/schedules/nope:0/pause", "/schedules/nope:0/resume"):
            assert_error(await h.client.post(path, headers=auth), 404, "schedule_not_found")
        assert_error(
            await h.client.post("/schedules/%00/pause", headers=auth), 404, "schedule_not_found"
        )
        assert (await h.client.post("/schedules/nope:0/pause")).status_code == 401
        assert_error(
            await h.client.get("/schedules/x/pause", headers=auth), 405, "method_not_allowed"
        )


async def test_cron_triggers_are_listed_with_the_workflow(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with make_api(app=scheduled_app(new_app)) as h:
        workflows = (await h.client.get("/workflows")).json()["workflows"]
        [nightly] = [w for w in workflows if w["id"] == "reports/nightly"]
        assert nightly["triggers"] == [
            {"type": "cron", "expr": "30 2 * * *", "tz": "Europe/Berlin", "catch_up": "latest"},
            {"type": "cron", "expr": "@hourly", "tz": "UTC", "catch_up": "all"},
        ]


async def test_a_store_outage_is_a_503(api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise df.StoreUnavailable("down")

    async def hangs(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)

    await api.app.open()
    store = api.app.store
    for name in ("list_schedules", "get_schedule", "pause_schedule", "resume_schedule"):
        monkeypatch.setattr(store, name, unavailable)
    for call in (
        api.client.get("/schedules"),
        api.client.post("/schedules/a:0/pause"),
        api.client.post("/schedules/a:0/resume"),
    ):
        response = await call
        assert_error(response, 503, "store_unavailable")
        assert int(response.headers["retry-after"]) > 0
    # A database that does not answer: 503 within the store deadline, not a hung request.
    monkeypatch.setattr(store, "list_schedules", hangs)
    monkeypatch.setattr(context(api.api), "deadline", 0.2)
    assert_error(await api.client.get("/schedules"), 503, "store_unavailable")


def context(api: Starlette) -> ApiContext:
    ctx = api.state.dataflows
    assert isinstance(ctx, ApiContext)
    return ctx
