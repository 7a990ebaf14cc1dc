"""A TCP proxy between worker processes and PostgreSQL that can delay, drop or blackhole traffic.

It runs its own event loop in a thread, so it keeps forwarding whatever the test's loop is doing.
Modes (``set_mode``):

- ``pass``: forward bytes as they come;
- ``delay``: hold every chunk ``delay`` seconds before forwarding it (both directions, in order);
- ``blackhole``: forward nothing and keep the connections open, as a network that silently
  loses packets does; what was held is delivered in order once the mode changes back (TCP
  retransmission after the network heals).

``drop()`` resets every open connection at once (RST), as a middlebox restart does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


class TcpProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target_url = target_url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self.mode = "pass"
        self.delay = 0.0
        self.connections = 0  # accepted so far
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # clear while blackholed
        self._flowing.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, application_name: str) -> str:
        """The target URL, through this proxy."""
        parts = urlsplit(self._target_url)
        netloc = f"{parts.username}@" if parts.username else ""
        query = f"{parts.query}&" if parts.query else ""
        return urlunsplit(
            parts._replace(
                netloc=f"{netloc}127.0.0.1:{self.port}",
                query=f"{query}application_name={application_name}",
            )
        )

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        assert mode in ("pass", "delay", "blackhole"), mode
        self._call(self._set_mode(mode, delay))

    def drop(self) -> int:
        """Reset every open connection; the number reset."""
        return self._call(self._drop())

    def close(self) -> None:
        if self._server is not None:
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # -- in the proxy's loop ---------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        self._open.update((writer, up_writer))
        try:
            with contextlib.suppress(asyncio.CancelledError):  # the proxy is closing
                await asyncio.gather(
                    self._pipe(reader, up_writer),
                    self._pipe(up_reader, writer),
                    return_exceptions=True,
                )
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    async def _set_mode(self, mode: str, delay: float) -> None:
        self.mode, self.delay = mode, (delay if mode == "delay" else 0.0)
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):  # reset by drop() or by the other side
            while data := await src.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def _drop(self) -> int:
        dropped = list(self._open)
        for writer in dropped:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0: close with RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._open.clear()
        return len(dropped) // 2

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._drop()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
