"""HTTP API fixtures: the real ASGI app, its lifespan driven as a server would, an httpx client.

Every test taking ``api`` or ``make_api`` runs on SQLite and on PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import dataflows as df
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.http import create_api
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from tests.pg import DbTarget

BASE_URL = "http://testserver"


@asynccontextmanager
async def lifespan(api: Starlette) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol: startup before the block, shutdown after it."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await to_app.get()

    async def send(message: Any) -> None:
        await from_app.put(dict(message))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(api(scope, receive, send))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await task


@asynccontextmanager
async def serve(api: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The API started (lifespan) with a client talking to it in-process."""
    transport = httpx.ASGITransport(app=api)
    async with lifespan(api), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


# -- a tiny webhook source: hex HMAC-SHA256 of the body in X-Test-Signature -------------------------


class HmacSource(Source):
    """Event ``test/{X-Test-Event}`` with the JSON body as data; delivery id ``X-Test-Delivery``."""

    name = "testhook"

    def verify(self, request: WebhookRequest, now: float) -> None:
        given = request.headers.get("x-test-signature", "").encode()
        expected = [sign(secret, request.body).encode() for secret in self.secrets]
        if not any([hmac.compare_digest(given, e) for e in expected]):
            raise WebhookUnauthorized("bad signature")

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        if request.headers.get("x-test-event") == "challenge":
            raise AssertionError("handshakes never reach parse")
        try:
            data = json.loads(request.body)
        except ValueError:
            raise WebhookInvalid("the body is not JSON") from None
        delivery = request.headers.get("x-test-delivery")
        if delivery is None:
            raise WebhookInvalid("no X-Test-Delivery")
        return WebhookEvent(f"test/{request.headers.get('x-test-event', 'ping')}", data, delivery)

    def handshake(self, request: WebhookRequest) -> dict[str, Any] | None:
        if request.headers.get("x-test-event") == "challenge":
            return {"challenge": request.query.get("challenge", "")}
        return None


SECRET = "s3cret"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hook_headers(
    body: bytes, delivery: str, event: str = "order", secret: str = SECRET
) -> dict[str, str]:
    return {
        "X-Test-Signature": sign(secret, body),
        "X-Test-Delivery": delivery,
        "X-Test-Event": event,
        "Content-Type": "application/json",
    }


# -- apps --------------------------------------------------------------------------------------------


def register_workflows(app: df.Dataflows) -> None:
    """``echo`` (triggered by ``test/order`` and ``demo/*``), ``two-steps``, ``fails``, ``waits``."""

    @app.workflow("echo", trigger=[df.on_event("test/order"), df.on_event("demo/*")])
    async def echo(event: df.Event, step: df.Step) -> dict[str, Any]:
        return {"got": dict(event.data)}

    @app.workflow("two-steps", retries=0)
    async def two_steps(event: df.Event, step: df.Step) -> Any:
        first = await step.run("add", lambda: event.data.get("x", 0) + 1)
        again = await step.run("add", lambda: first + 1)
        return again

    @app.workflow("fails", retries=0)
    async def fails(event: df.Event, step: df.Step) -> None:
        def boom() -> None:
            raise df.NonRetriableError("boom")

        await step.run("boom", boom)

    @app.workflow("waits")
    async def waits(event: df.Event, step: df.Step) -> Any:
        return await step.wait_for_event("wait", "never/happens", timeout="7d")


@dataclass
class Harness:
    app: df.Dataflows
    api: Starlette
    client: httpx.AsyncClient


@pytest.fixture
def new_app(db: DbTarget) -> Callable[..., df.Dataflows]:
    def make(**options: Any) -> df.Dataflows:
        app = df.Dataflows(db.url, schema=db.schema or "dataflows", **options)
        register_workflows(app)
        app.add_source(HmacSource([SECRET, "rotated"]))
        return app

    return make


@pytest.fixture
def make_api(
    new_app: Callable[..., df.Dataflows],
) -> Callable[..., Any]:
    """``async with make_api(api_keys=..., max_body_bytes=...) as h``: app, API and client."""

    @asynccontextmanager
    async def make(
        *,
        api_keys: Sequence[str] | None = (),
        environ: Mapping[str, str] | None = None,
        app: df.Dataflows | None = None,
        **options: Any,
    ) -> AsyncIterator[Harness]:
        app = app or new_app()
        api = create_api(app, api_keys=api_keys, environ=environ or {}, **options)
        async with serve(api) as client:
            yield Harness(app, api, client)

    return make


@pytest.fixture
async def api(make_api: Callable[..., Any]) -> AsyncIterator[Harness]:
    """An open API (no keys) on this test's store."""
    async with make_api() as harness:
        yield harness
