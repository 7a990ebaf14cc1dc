"""The real ``dataflows serve`` while its PostgreSQL is stopped, then frozen (SIGSTOP: connections
stay open and nothing answers): every route that needs the database answers 503 with
``Retry-After`` within the store deadline (2 s), the routes that need none answer at once, and
``/readyz`` and intake come back as soon as the database does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.private_pg import PrivatePostgres

pytestmark = pytest.mark.crash

APP = """
import dataflows as df

app = df.Dataflows()


@app.workflow("echo", trigger=df.on_event("test/echo"))
async def echo(event: df.Event, step: df.Step) -> dict:
    return dict(event.data)
"""
SECRET = "outage-secret"
DEADLINE = 2.0
#: Slack for a loaded 2-core machine on top of the deadline.
SLACK = 0.8
URL = re.compile(r"http://127\.0\.0\.1:\d+")


@pytest.fixture
def serve(private_pg: PrivatePostgres, tmp_path: Path) -> Iterator[str]:
    """``dataflows serve`` on the private server; its base URL."""
    (tmp_path / "flows.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    env.update(
        DATAFLOWS_DATABASE_URL=private_pg.url,
        DATAFLOWS_GITHUB_SECRET=SECRET,
        PYTHONUNBUFFERED="1",
    )
    out = tmp_path / "serve.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "dataflows.cli", "serve", "flows.py", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := URL.search(out.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        yield found.group(0)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def github_hook(n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"n": n}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-Hub-Signature-256": f"sha256={signature}",
        "X-GitHub-Event": "ping-test",
        "X-GitHub-Delivery": f"delivery-{n}",
        "Content-Type": "application/json",
    }


def data_routes(
    client: httpx.AsyncClient, run_id: str, n: int
) -> list[tuple[str, Callable[[], Awaitable[httpx.Response]]]]:
    body, headers = github_hook(n)
    return [
        ("POST /events", lambda: client.post("/events", json={"name": "test/echo"})),
        ("POST /events list", lambda: client.post("/events", json=[{"name": "test/echo"}])),
        ("POST /workflows/echo/runs", lambda: client.post("/workflows/echo/runs", json={})),
        ("POST /hooks/github", lambda: client.post("/hooks/github", content=body, headers=headers)),
        ("GET /runs", lambda: client.get("/runs")),
        ("GET /runs/{id}", lambda: client.get(f"/runs/{run_id}")),
        ("POST /runs/{id}/cancel", lambda: client.post(f"/runs/{run_id}/cancel")),
        ("POST /runs/{id}/retry", lambda: client.post(f"/runs/{run_id}/retry")),
        ("GET /readyz", lambda: client.get("/readyz")),
    ]


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call()
    return response, time.monotonic() - started


async def assert_outage_answers(client: httpx.AsyncClient, run_id: str, n: int) -> None:
    routes = data_routes(client, run_id, n)
    answers = await asyncio.gather(*(timed(call) for _, call in routes))
    for (route, _), (response, took) in zip(routes, answers, strict=True):
        assert response.status_code == 503, (route, response.status_code, response.text)
        assert int(response.headers["retry-after"]) > 0, route
        assert response.json()["error"]["code"] == "store_unavailable", route
        assert took < DEADLINE + SLACK, (route, took)
    for path in ("/healthz", "/workflows", "/metrics", "/openapi.json"):
        response, took = await timed(lambda p=path: client.get(p))  # type: ignore[misc]
        assert response.status_code == 200, (path, response.text)
        assert took < 0.5, (path, took)
        if path == "/metrics":
            assert "dataflows_store_up 0.0" in response.text


async def assert_back_within_a_second(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() - started < 1.0 + SLACK, "/readyz did not turn 200 in time"
        await asyncio.sleep(0.05)
    answer, took = await timed(lambda: client.post("/events", json={"name": "test/echo"}))
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - started < 1.0 + SLACK, "intake did not recover in time"
    assert took < DEADLINE


@pytest.fixture
async def client(serve: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=serve, timeout=30) as client:
        yield client


async def test_outage_answers_are_fast_and_honest(
    client: httpx.AsyncClient, private_pg: PrivatePostgres
) -> None:
    started = await client.post("/workflows/echo/runs", json={"data": {"x": 1}})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert (await client.get("/readyz")).status_code == 200

    await asyncio.to_thread(private_pg.stop, "immediate")
    await assert_outage_answers(client, run_id, 1)
    await assert_outage_answers(client, run_id, 2)  # and again, while the pool reconnects
    await asyncio.to_thread(private_pg.start)
    await assert_back_within_a_second(client)

    private_pg.freeze()
    try:
        await assert_outage_answers(client, run_id, 3)
        await assert_outage_answers(client, run_id, 4)
    finally:
        private_pg.thaw()
    await assert_back_within_a_second(client)
