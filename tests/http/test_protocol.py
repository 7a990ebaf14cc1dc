"""The HTTP connection over real sockets: bounded headers, malformed requests, floods.

Requests are written by hand, byte for byte, since no HTTP client sends them this wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

import dataflows as df
from dataflows.http import create_api
from dataflows.http.protocol import LINGER_SECONDS, MAX_HEADER_FIELDS, ServerConfig
from tests.cli.test_processes import APP, Command, database_url, eventually
from tests.http.test_server import uvicorn_server

CHUNK = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"  # 64 KiB of a chunked body


@dataclass
class Answer:
    """What the server said, and whether it closed the connection."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False

    def error(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self
        assert self.headers.get("connection") == "close", self
        return json.loads(self.body)["error"]


def exchange(port: int, head: bytes, then: bytes = b"", *, seconds: float = 5.0) -> Answer:
    """Send ``head``, then ``then`` over and over if given, until the server has answered and
    closed the connection, or ``seconds`` have passed; reading whatever the server sends."""
    answer = Answer()
    received = bytearray()
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        pending = head
        while (left := deadline - time.monotonic()) > 0:
            writers = [sock] if pending or then else []
            readable, writable, _ = select.select([sock], writers, [], min(left, 0.5))
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    answer.closed = True
                    break
                received += data
                if _complete(received, answer) and not then and "connection" not in answer.headers:
                    break  # a whole answer to a whole request, on a connection kept alive
            elif writable:
                pending = pending or then
                try:
                    pending = pending[sock.send(pending) :]
                except BlockingIOError:
                    pass
                except ConnectionError:
                    pending = then = b""  # the server stopped reading: read what it said
    _complete(received, answer)
    return answer


def _complete(received: bytearray, answer: Answer) -> bool:
    head, found, body = bytes(received).partition(b"\r\n\r\n")
    if not found:
        return False
    status_line, *lines = head.decode("latin-1").split("\r\n")
    answer.status = int(status_line.split()[1])
    answer.headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    answer.body = body
    return len(body) >= int(answer.headers.get("content-length", "0"))


@asynccontextmanager
async def server(
    tmp_path: Path, *, keys: list[str] | None = None, **options: Any
) -> AsyncIterator[int]:
    """The API of an empty SQLite app, served in this event loop by :class:`HttpProtocol`."""
    app = df.Dataflows(f"sqlite:///{tmp_path / 'flows.db'}")
    api = create_api(app, api_keys=keys or [], environ={}, max_body_bytes=100_000)
    async with uvicorn_server(api, ServerConfig, **options) as port:
        yield port


async def ask(port: int, head: bytes, then: bytes = b"", *, seconds: float = 5.0) -> Answer:
    return await asyncio.to_thread(exchange, port, head, then, seconds=seconds)


MALFORMED = {
    "an invalid Content-Length": b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two Content-Lengths": b"POST /events HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "a request line that is not one": b"GARBAGE\r\n\r\n",
    "an unknown HTTP version": b"GET /healthz HTTP/9.7\r\nHost: x\r\n\r\n",
    "a control byte in a header name": b"GET /healthz HTTP/1.1\r\nHo\x01st: x\r\n\r\n",
    "a NUL in a header value": b"GET /healthz HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    "a header line without a colon": b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
    "a bad chunk size": b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "a non-ASCII path": b"GET /h\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=list(MALFORMED))
async def test_a_malformed_request_is_answered_400_in_json(
    tmp_path: Path, request_bytes: bytes
) -> None:
    async with server(tmp_path) as port:
        answer = await ask(port, request_bytes)
    assert answer.status == 400, answer
    assert answer.error()["code"] == "malformed_request"
    assert answer.closed


async def test_headers_up_to_the_limit_are_served(tmp_path: Path) -> None:
    async with server(tmp_path, max_header_bytes=4096) as port:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n"
        exact = head % (b"p" * (4096 - len(head % b"")))
        assert len(exact) == 4096
        answer = await ask(port, exact)
        assert answer.status == 200, answer
        assert not answer.closed  # kept alive, as before

        over = await ask(port, head % (b"p" * (4097 - len(head % b""))))
        assert over.status == 431, over
        assert over.error() == {
            "code": "headers_too_large",
            "message": "the request's headers are over the 4096-byte limit",
        }
        assert over.closed


async def test_an_endless_header_is_cut_at_the_limit(tmp_path: Path) -> None:
    async with server(tmp_path) as port:  # the default: 64 KiB
        for head in (b"GET /healthz HTTP/1.1\r\nX-Big: ", b"GET /" + b"a" * 1000):
            answer = await ask(port, head, b"x" * 65536, seconds=10)
            assert answer.status == 431, answer
            assert answer.error()["code"] == "headers_too_large"
            assert answer.closed


async def test_too_many_header_fields(tmp_path: Path) -> None:
    fields = b"".join(b"X-%d: y\r\n" % n for n in range(MAX_HEADER_FIELDS))
    async with server(tmp_path) as port:
        answer = await ask(port, b"GET /healthz HTTP/1.1\r\n" + fields + b"\r\n")
        assert answer.status == 200, answer
        answer = await ask(port, b"GET /healthz HTTP/1.1\r\n" + fields + b"X-1: z\r\n\r\n")
    assert answer.status == 431, answer
    assert answer.error()["message"] == "the request's headers are over the limit of 100 fields"
    assert answer.closed


async def test_kept_alive_and_pipelined_requests_are_served_as_before(tmp_path: Path) -> None:
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async with server(tmp_path, max_header_bytes=1024) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(get * 40)  # 40 requests of one block each, 1400 bytes together
            for _ in range(40):
                assert (await reader.readline()).startswith(b"HTTP/1.1 200"), "pipelined"
                await reader.readuntil(b'{"status":"ok"}')
            writer.write(get)
            assert (await reader.readline()).startswith(b"HTTP/1.1 200"), "kept alive"
        finally:
            writer.close()


async def test_an_answer_before_the_body_ends_the_connection(tmp_path: Path) -> None:
    post = b"POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    async with server(tmp_path, keys=["k"]) as port:
        started = time.monotonic()
        answer = await ask(port, post + b"\r\n", CHUNK, seconds=LINGER_SECONDS + 3)
        assert answer.status == 401 and answer.closed, answer
        assert time.monotonic() - started < LINGER_SECONDS + 1

        authorized = post + b"Authorization: Bearer k\r\nContent-Type: application/json\r\n\r\n"
        answer = await ask(port, authorized, CHUNK, seconds=LINGER_SECONDS + 3)
        assert answer.status == 413 and answer.closed, answer
        assert json.loads(answer.body)["error"]["code"] == "body_too_large"


# Slow headers.

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends it never comes


async def test_headers_that_do_not_arrive_in_time_are_answered_408(tmp_path: Path) -> None:
    async with server(tmp_path, header_timeout=0.5) as port:
        started = time.monotonic()
        answer = await ask(port, PARTIAL, seconds=5)
        took = time.monotonic() - started
        assert answer.status == 408 and answer.closed, answer
        assert answer.error()["code"] == "request_timeout"
        assert 0.4 < took < 3, took


async def test_a_connection_that_asks_nothing_is_closed_after_the_timeout(tmp_path: Path) -> None:
    async with server(tmp_path, header_timeout=0.5) as port:
        started = time.monotonic()
        answer = await ask(port, b"", seconds=5)
        assert answer.closed and answer.status is None, answer
        assert 0.4 < time.monotonic() - started < 3


async def test_headers_sent_slowly_but_in_time_are_served(tmp_path: Path) -> None:
    def slow_request(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                sock.sendall(piece)
                time.sleep(0.3)
            return sock.recv(65536)

    async with server(tmp_path, header_timeout=1.5) as port:
        assert (await asyncio.to_thread(slow_request, port)).startswith(b"HTTP/1.1 200")


def test_the_header_timeout_reaches_every_server_process(tmp_path: Path) -> None:
    cmd = start_serve(tmp_path, "--workers", "2", DATAFLOWS_HEADER_TIMEOUT="0.5")
    try:
        port = int(cmd.url().rsplit(":", 1)[1])
        for _ in range(4):  # either process may take each connection
            answer = exchange(port, PARTIAL, seconds=5)
            assert answer.status == 408, answer
        assert cmd.stop() == 0, cmd.output()
    finally:
        if cmd.popen.poll() is None:
            cmd.popen.kill()
            cmd.popen.wait(10)


def test_every_server_process_logs_json_lines_when_asked(tmp_path: Path) -> None:
    cmd = start_serve(tmp_path, "--workers", "2", DATAFLOWS_LOG_FORMAT="json")
    try:
        port = int(cmd.url().rsplit(":", 1)[1])
        for _ in range(4):  # either process may take each connection, and logs the refusal
            assert (
                exchange(
                    port, b"GET /healthz HTTP/1.1\r\nX-Pad: %s\r\n\r\n" % (b"p" * 70_000)
                ).status
                == 431
            )

        def refusals() -> list[dict[str, Any]]:
            lines = [json.loads(ln) for ln in cmd.err.read_text().splitlines() if ln.strip()]
            return [ln for ln in lines if ln["message"].startswith("refused a request")]

        eventually(lambda: len(refusals()) == 4, 10, "the refusals' log lines", cmd)
        assert cmd.stop() == 0, cmd.output()
        # Every line on stderr is one JSON object, the server processes' own included.
        lines = [json.loads(ln) for ln in cmd.err.read_text().splitlines() if ln.strip()]
        started = [ln for ln in lines if ln["message"].startswith("Started server process")]
        assert len(started) == 2, lines
        assert all(
            ln["level"] == "WARNING" and ln["logger"] == "dataflows.http" for ln in refusals()
        )
    finally:
        if cmd.popen.poll() is None:
            cmd.popen.kill()
            cmd.popen.wait(10)


# The flood, against the real `dataflows serve` process.

FLOOD_SECONDS = 4.0
RSS_GROWTH_BOUND = 40 * 1024 * 1024


def start_serve(tmp_path: Path, *args: str, **env: str) -> Command:
    """``dataflows serve ARGS`` with an open API on a free port."""
    (tmp_path / "flows.py").write_text(APP)
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    base["DATAFLOWS_DATABASE_URL"] = database_url(tmp_path)
    return Command(tmp_path, ["serve", "flows.py", "--port", "0", *args], {**base, **env})


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``dataflows serve`` in one process: its port and process id."""
    cmd = start_serve(tmp_path)
    try:
        yield int(cmd.url().rsplit(":", 1)[1]), cmd.pid
        assert cmd.stop() == 0, cmd.output()
    finally:
        if cmd.popen.poll() is None:
            cmd.popen.kill()
            cmd.popen.wait(10)


def flood(port: int, head: bytes, then: bytes) -> list[Answer]:
    """Connect again and again for :data:`FLOOD_SECONDS`, each time sending without end."""
    answers = []
    deadline = time.monotonic() + FLOOD_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        answers.append(exchange(port, head, then, seconds=left))
    return answers


def test_a_flood_of_endless_requests_leaves_memory_bounded(serve: tuple[int, int]) -> None:
    port, pid = serve
    server = psutil.Process(pid)
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert exchange(port, healthz).status == 200
    idle = server.memory_info().rss

    endless_header = (b"GET /runs HTTP/1.1\r\nX-Big: ", b"h" * 65536)
    endless_body = (
        b"POST /events HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        CHUNK,
    )
    floods = [endless_header] * 6 + [endless_body] * 4
    peak = idle
    with ThreadPoolExecutor(len(floods)) as pool:
        futures = [pool.submit(flood, port, head, then) for head, then in floods]
        while not all(f.done() for f in futures):
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.02)
        results = [f.result() for f in futures]

    assert peak - idle < RSS_GROWTH_BOUND, f"grew by {(peak - idle) / 2**20:.0f} MiB"
    for (head, _), answers in zip(floods, results, strict=True):
        expected = 431 if head is endless_header[0] else 413
        *ended, _ = answers  # the last one may have been cut short by the deadline
        seen = [(a.status, a.closed) for a in answers]
        assert all(a.closed for a in ended), seen
        assert {a.status for a in answers} <= {expected, None}, seen
        assert any(a.status == expected for a in answers), seen
    assert exchange(port, healthz).status == 200


def test_the_limit_reaches_every_server_process(tmp_path: Path) -> None:
    cmd = start_serve(tmp_path, "--workers", "2", DATAFLOWS_MAX_HEADER_BYTES="2048")
    try:
        port = int(cmd.url().rsplit(":", 1)[1])
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n"
        for _ in range(6):  # either process may take each connection
            assert exchange(port, head % (b"p" * 1900)).status == 200
            assert exchange(port, head % (b"p" * 2100)).status == 431
        assert cmd.stop() == 0, cmd.output()
    finally:
        if cmd.popen.poll() is None:
            cmd.popen.kill()
            cmd.popen.wait(10)
