"""An open-loop HTTP load generator: a fixed offered load, whatever the server's latency.

``python -m bench.loadgen URL RATE SECONDS`` sends ``RATE`` requests per second for ``SECONDS``
and prints one JSON line. Request ``i`` is due at ``start + i / RATE`` and its latency is measured
from that due time (so a stalled server cannot hide queueing: no coordinated omission). Requests
go out over keep-alive connections; a new connection opens whenever all are busy (up to
``MAX_CONNECTIONS``). The body is the same Azure DevOps service hook wrk posts, with a unique id.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
import time
from urllib.parse import urlsplit

from bench.stats import percentile

MAX_CONNECTIONS = 512
AUTHORIZATION = "Basic YmVuY2g6c2VjcmV0"  # bench:secret
BODY = (
    '{"id":"%s-%d","eventType":"workitem.created",'
    '"resource":{"id":%d,"fields":{"System.Title":"bench"}}}'
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LoadGenerator:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.prefix = secrets.token_hex(6)
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)  # requests in flight, one per connection
        self.opened = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}

    async def connection(self) -> Connection:
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    def request(self, i: int) -> bytes:
        body = (BODY % (self.prefix, i, i)).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: {AUTHORIZATION}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, i: int, due: float) -> None:
        async with self.slots:
            status = await self.exchange(i)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(time.perf_counter() - due)

    async def exchange(self, i: int) -> str:
        """One request on an idle (or new) connection; its status code, or "error"."""
        try:
            reader, writer = await self.connection()
            writer.write(self.request(i))
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.idle.append((reader, writer))
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.opened -= 1
            return "error"

    async def run(self, rate: float, seconds: float) -> dict[str, object]:
        total = int(rate * seconds)
        start = time.perf_counter() + 0.05
        pending = set()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.send(i, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
        ms = [s * 1000 for s in self.latencies]
        return {
            "offered_rps": rate,
            "requests": total,
            "statuses": self.statuses,
            "accepted_rps": self.statuses.get("202", 0) / elapsed,
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "max_ms": max(ms),
            "connections": self.opened,
        }


def main() -> None:
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    try:
        from uvloop import new_event_loop as loop_factory  # installed with uvicorn[standard]
    except ImportError:
        loop_factory = None  # type: ignore[assignment]
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        print(json.dumps(runner.run(LoadGenerator(url).run(rate, seconds))))


if __name__ == "__main__":
    main()
