"""The API mounted in a FastAPI or Starlette app, its store and a worker run by the host's lifespan.

Each host app is real: its lifespan is driven over the ASGI protocol as a server would, and the
requests go through its router to the mounted API. The worker runs in the same event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import dataflows as df
from dataflows.http import create_api, dataflows_lifespan
from tests.http.conftest import BASE_URL, hook_headers, lifespan


def fastapi_host(api: Starlette) -> Starlette:
    @asynccontextmanager
    async def host_lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with dataflows_lifespan(api, worker=True, concurrency=4, poll_interval=0.02):
            yield

    host = FastAPI(lifespan=host_lifespan)

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    host.mount("/dataflows", api)
    return host


def starlette_host(api: Starlette) -> Starlette:
    @asynccontextmanager
    async def host_lifespan(_: Starlette) -> AsyncIterator[None]:
        async with dataflows_lifespan(api, worker=True, concurrency=4, poll_interval=0.02):
            yield

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    routes = [Route("/hello", hello), Mount("/dataflows", app=api)]
    return Starlette(routes=routes, lifespan=host_lifespan)


@asynccontextmanager
async def hosted(host: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=host)
    async with lifespan(host), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def completed(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run as ``GET /dataflows/runs/{id}`` shows it, once the in-process worker finished it."""
    async with asyncio.timeout(15):
        while True:
            response = await client.get(f"/dataflows/runs/{run_id}")
            assert response.status_code == 200, response.text
            run: dict[str, Any] = response.json()
            if run["status"] not in ("queued", "running"):
                return run
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("make_host", [fastapi_host, starlette_host], ids=["fastapi", "starlette"])
async def test_a_mounted_api_runs_its_events_to_completion(
    new_app: Callable[..., df.Dataflows], make_host: Callable[[Starlette], Starlette]
) -> None:
    app = new_app()
    host = make_host(create_api(app, api_keys=(), environ={}))
    async with hosted(host) as client:
        sent = await client.post("/dataflows/events", json={"name": "test/order", "data": {"n": 1}})
        assert sent.status_code == 202, sent.text
        [run_id] = sent.json()["run_ids"]
        run = await completed(client, run_id)
        assert (run["workflow_id"], run["status"], run["result"]) == (
            "echo",
            "completed",
            {"got": {"n": 1}},
        )

        body = json.dumps({"order": 2}).encode()
        hook = await client.post(
            "/dataflows/hooks/testhook", content=body, headers=hook_headers(body, "mounted-1")
        )
        assert hook.status_code == 202, hook.text
        [hook_run] = hook.json()["run_ids"]
        assert (await completed(client, hook_run))["result"] == {"got": {"order": 2}}

        hello = await client.get("/hello")  # the host's own route is untouched
        assert hello.status_code == 200 and hello.json() == {"hello": "world"}
        missing = await client.get("/dataflows/runs/no-such-run")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"

    # The host's shutdown stopped the worker and closed the store: a run started now stays queued.
    async with app:
        later = await app.send("test/order", {"n": 2})
        await asyncio.sleep(0.2)
        assert (await app.get_run(later.run_ids[0])).status == "queued"


async def test_without_a_worker_the_lifespan_only_opens_the_store(
    new_app: Callable[..., df.Dataflows],
) -> None:
    app = new_app()
    api = create_api(app, api_keys=(), environ={})
    async with dataflows_lifespan(api):
        sent = await app.send("test/order", {"n": 3})
        await asyncio.sleep(0.2)
        assert (await app.get_run(sent.run_ids[0])).status == "queued"


async def test_the_lifespan_needs_the_api_create_api_built() -> None:
    with pytest.raises(TypeError, match="create_api"):
        async with dataflows_lifespan(Starlette()):
            pass
