"""The API under a real uvicorn server, the ``app_from_env`` factory, and odd webhook sources."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

import dataflows as df
from dataflows.http import app_from_env, create_api
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from tests.http.conftest import serve
from tests.http.test_events import assert_error
from tests.pg import DbTarget


@asynccontextmanager
async def uvicorn_server(
    api: Starlette, config_class: type[uvicorn.Config] = uvicorn.Config, **options: Any
) -> AsyncIterator[int]:
    """``api`` served by uvicorn on a free local port, in this event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = config_class(api, log_config=None, ws="none", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def raw_request(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request by hand and return what the server answers (until it closes or 2 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server answered and closed: read what it said
        return await asyncio.wait_for(reader.read(65536), 2.0)
    finally:
        writer.close()


async def test_a_chunked_body_over_the_limit_under_uvicorn(db: DbTarget) -> None:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    api = create_api(app, api_keys=[], environ={}, max_body_bytes=10_000)
    async with uvicorn_server(api) as port:
        head = (
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"
        answer = await raw_request(port, head, [chunk] * 8)  # 32 KiB, no end chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"body_too_large"' in answer

        declared = (
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999\r\n\r\n"
        )
        answer = await raw_request(port, declared, [])  # refused before any body is sent
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_app_from_env_needs_dataflows_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAFLOWS_APP", raising=False)
    with pytest.raises(RuntimeError, match="DATAFLOWS_APP"):
        app_from_env()


async def test_app_from_env_serves_the_named_app(
    db: DbTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"http_factory_app_{secrets.token_hex(4)}"
    source = (
        "import dataflows as df\n"
        f"app = df.Dataflows({db.url!r}, schema={db.schema or 'dataflows'!r})\n"
        "@app.workflow('hello', trigger=df.on_event('hello/said'))\n"
        "async def hello(event, step):\n"
        "    return 'hi'\n"
    )
    path = tmp_path / f"{module}.py"
    path.write_text(source)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("DATAFLOWS_APP", str(path))
    monkeypatch.setenv("DATAFLOWS_API_KEYS", "env-key")
    try:
        api = app_from_env()
        async with serve(api) as client:
            assert (await client.get("/workflows")).status_code == 401
            headers = {"Authorization": "Bearer env-key"}
            listed = (await client.get("/workflows", headers=headers)).json()
            assert [w["id"] for w in listed["workflows"]] == ["hello"]
            sent = await client.post("/events", json={"name": "hello/said"}, headers=headers)
            assert sent.status_code == 202 and len(sent.json()["run_ids"]) == 1
    finally:
        sys.modules.pop(module, None)


class QuirkySource(Source):
    """A source whose own code raises plain exceptions on inputs it does not expect."""

    name = "quirky"

    def verify(self, request: WebhookRequest, now: float) -> None:
        int(request.headers["x-timestamp"])  # KeyError / ValueError on bad input

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        fields = dict(part.split("=") for part in request.body.decode().split("&"))
        return WebhookEvent(f"quirky/{fields['type']}", {"fields": fields}, fields["id"])


async def test_source_exceptions_on_bad_input_are_never_500(db: DbTarget) -> None:
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")
    app.add_source(QuirkySource("secret"))
    async with serve(create_api(app, api_keys=[], environ={})) as client:
        for headers in ({}, {"X-Timestamp": "soon"}):
            response = await client.post("/hooks/quirky", content=b"type=a&id=1", headers=headers)
            assert_error(response, 401, "invalid_signature")
        ok = {"X-Timestamp": "1"}
        for body in (b"no-equals", b"type=a", b"\xff\xfe", b"a=b=c"):
            response = await client.post("/hooks/quirky", content=body, headers=ok)
            assert_error(response, 422, "invalid_webhook")
        good = await client.post("/hooks/quirky", content=b"type=a&id=1", headers=ok)
        assert good.status_code == 202, good.text
        assert good.json()["event_id"] == "quirky:1"
