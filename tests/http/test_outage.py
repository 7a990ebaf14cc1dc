"""PostgreSQL stopped under the running API (guarantee 4): 503 with Retry-After, never a 2xx or a
500, while it is away; everything answered 202 is there when it is back.

Runs on a private server (tests/faults/private_pg.py): the shared one is never stopped.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx

import dataflows as df
from dataflows.http import create_api
from dataflows.store.postgres import PostgresStore
from tests.faults.private_pg import PrivatePostgres
from tests.http.conftest import SECRET, HmacSource, hook_headers, register_workflows, serve

#: How long a request waits for a pooled connection before answering 503.
POOL_TIMEOUT = 1.0


def outage_app(server: PrivatePostgres) -> df.Dataflows:
    store = PostgresStore(server.url, schema="http_outage", timeout=POOL_TIMEOUT)
    app = df.Dataflows(server.url, schema="http_outage", store=store)
    register_workflows(app)
    app.add_source(HmacSource(SECRET))
    return app


@dataclass
class Accepted:
    """Every 202 answer, to check after the outage that its event and runs exist."""

    events: dict[str, list[str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        self.answers.append(response.status_code)
        assert response.status_code in (202, 503), response.text
        if response.status_code == 503:
            assert_unavailable(response)
            return
        body = response.json()
        if "run_id" in body:
            self.runs.append(body["run_id"])
        elif "event_id" in body:
            self.events[body["event_id"]] = body["run_ids"]
        else:
            for event in body["events"]:
                self.events[event["id"]] = event["run_ids"]


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "store_unavailable"


async def send_everything(client: httpx.AsyncClient, n: int, accepted: Accepted) -> None:
    """One of each write: an event, a list of events, a run start, a webhook."""
    accepted.record(await client.post("/events", json={"name": "test/order", "id": f"e-{n}"}))
    batch = [{"name": "demo/a", "data": {"n": n}}, {"name": "unheard", "id": f"u-{n}"}]
    accepted.record(await client.post("/events", json=batch))
    accepted.record(await client.post("/workflows/two-steps/runs", json={"data": {"x": n}}))
    body = json.dumps({"n": n}).encode()
    headers = hook_headers(body, f"hook-{n}")
    accepted.record(await client.post("/hooks/testhook", content=body, headers=headers))


async def keep_sending(client: httpx.AsyncClient, accepted: Accepted, stop: asyncio.Event) -> None:
    n = 1000
    while not stop.is_set():
        await send_everything(client, n, accepted)
        n += 1


async def every_store_route_is_unavailable(client: httpx.AsyncClient, run_id: str) -> None:
    body = b'{"n": 1}'
    calls = [
        client.post("/events", json={"name": "test/order"}),
        client.post("/events", json=[{"name": "test/order"}]),
        client.post("/workflows/echo/runs", json={}),
        client.get("/runs"),
        client.get("/runs", params={"workflow_id": "echo", "status": "queued"}),
        client.get(f"/runs/{run_id}"),
        client.post(f"/runs/{run_id}/cancel"),
        client.post("/runs/cancel", json={"workflow_id": "echo"}),
        client.post(f"/runs/{run_id}/retry"),
        client.post("/hooks/testhook", content=body, headers=hook_headers(body, "during")),
        client.get("/readyz"),
    ]
    for response in await asyncio.gather(*calls):
        assert_unavailable(response)


async def routes_without_the_store_still_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/workflows")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "dataflows_store_up 0.0" in metrics.text
    assert "dataflows_queue_depth{" not in metrics.text
    unsigned = await client.post("/hooks/testhook", content=b"{}")
    assert unsigned.status_code == 401  # verification needs no database


async def back_again(client: httpx.AsyncClient, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await client.get("/readyz")).status_code != 200:
        assert loop.time() < deadline, "the API never became ready again"
        await asyncio.sleep(0.2)


async def assert_all_durable(app: df.Dataflows, accepted: Accepted) -> None:
    for run_id in accepted.runs:
        await app.get_run(run_id)  # raises RunNotFound if a 202 was not durable
    for event_id, run_ids in accepted.events.items():
        for run_id in run_ids:
            run = await app.get_run(run_id)
            assert run.event.id == event_id
    all_runs = {r.id for r in await app.list_runs(limit=10_000)}
    expected = set(accepted.runs) | {r for ids in accepted.events.values() for r in ids}
    assert expected <= all_runs


async def test_postgres_stopped_under_the_api(private_pg: PrivatePostgres) -> None:
    app = outage_app(private_pg)
    async with serve(create_api(app, api_keys=[], environ={})) as client:
        accepted = Accepted()
        for n in range(5):
            await send_everything(client, n, accepted)
        assert set(accepted.answers) == {202}
        run_id = accepted.runs[0]

        # Writes keep coming while the server goes down: each is a 202 (then durable) or a 503.
        stop_sending = asyncio.Event()
        sender = asyncio.create_task(keep_sending(client, accepted, stop_sending))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(private_pg.stop, "immediate")
        await asyncio.sleep(0.5)
        stop_sending.set()
        await sender

        await every_store_route_is_unavailable(client, run_id)
        await every_store_route_is_unavailable(client, run_id)  # and again, pool reconnecting
        await routes_without_the_store_still_answer(client)

        await asyncio.to_thread(private_pg.start)
        await back_again(client)
        await assert_all_durable(app, accepted)
        assert 503 in accepted.answers and accepted.answers.count(202) > 20

        after = Accepted()
        await send_everything(client, 99, after)
        assert set(after.answers) == {202}
        await assert_all_durable(app, after)


async def test_the_api_starts_while_postgres_is_down(private_pg: PrivatePostgres) -> None:
    await asyncio.to_thread(private_pg.stop, "fast")
    app = outage_app(private_pg)
    async with serve(create_api(app, api_keys=[], environ={})) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert_unavailable(await client.get("/readyz"))
        assert_unavailable(await client.post("/events", json={"name": "test/order"}))
        await asyncio.to_thread(private_pg.start)
        await back_again(client)
        accepted = Accepted()
        await send_everything(client, 1, accepted)
        assert set(accepted.answers) == {202}
        await assert_all_durable(app, accepted)
