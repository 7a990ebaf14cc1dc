"""The HTTP/1.1 connection under ``dataflows serve`` and ``dataflows dev``: bounded, JSON errors.

uvicorn's httptools protocol (its fastest) keeps no limit on a request's header block: a client
streaming an endless header grows the server by as much as it sends before any route could refuse
it. :class:`HttpProtocol` feeds the parser at most ``max_header_bytes`` of one header block and at
most :data:`MAX_HEADER_FIELDS` fields, and answers ``431 headers_too_large`` beyond either; a request
the parser refuses is answered ``400 malformed_request``. Both are the API's JSON error with
``Connection: close``. Bodies are the routes' business (see :mod:`dataflows.http.body`), but a
connection answered before its request's body arrived in full (a 401, a 413) is not kept: the rest
of the body would otherwise be read and dropped for as long as the client sends it.

A request's line and headers must also arrive within ``header_timeout`` seconds of its first
byte (and a new connection must begin one within as long): a client trickling its headers a byte
at a time would otherwise hold a connection for ever. A request cut off so is answered
``408 request_timeout``; a connection that never began one is closed without an answer.

A connection that ends so first drains what the client still sends, for at most
:data:`LINGER_SECONDS`: closing on unread data resets the connection, which can destroy the answer
before the client reads it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from dataflows.http.errors import ApiError, error_response

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADER_BYTES",
    "LINGER_SECONDS",
    "MAX_HEADER_FIELDS",
    "HttpProtocol",
    "ServerConfig",
]

logger = logging.getLogger("dataflows.http")

#: The request line and headers of one request, in bytes.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
#: Seconds a request's line and headers may take to arrive, from its first byte.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Header fields in one request: each is a few Python objects, so the byte limit alone would let
#: a block of tiny fields cost many times its size.
MAX_HEADER_FIELDS = 100
#: How long a connection that ends early drains what the client still sends before it closes.
LINGER_SECONDS = 2.0


class ServerConfig(uvicorn.Config):
    """uvicorn's settings, served by :class:`HttpProtocol` with a ``max_header_bytes`` limit
    and a ``header_timeout``."""

    def __init__(
        self,
        app: Any,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(app, http=HttpProtocol, **options)
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout


class _HeadersTooLarge(Exception):
    """Raised from a parser callback: it stops the parser, which then reports an error."""


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded header block and the API's error answers."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if isinstance(config, ServerConfig):
            self.max_header_bytes, self.header_timeout = (
                config.max_header_bytes,
                config.header_timeout,
            )
        else:
            self.max_header_bytes, self.header_timeout = (
                DEFAULT_MAX_HEADER_BYTES,
                DEFAULT_HEADER_TIMEOUT,
            )
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_begun = False
        self._reading_headers = True  # from the end of one message to its successor's headers
        self._header_room = self.max_header_bytes
        self._header_fields = 0
        self._too_many_fields = False
        self._ending = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()  # a connection that never sends a request is not kept

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The parser buffers a header it has not seen the end of, so it never gets more than the
        # room left. Bytes after the end of a message count for the next one only from the next
        # call: at most one more limit's worth, still a bound.
        while data and not self._ending:
            if self._reading_headers:
                piece, data = data[: self._header_room], data[self._header_room :]
                self._header_room -= len(piece)
            else:
                piece, data = data, b""
            super().data_received(piece)
            if self._reading_headers and self._header_room == 0 and not self._ending:
                self._refuse_headers(f"over the {self.max_header_bytes}-byte limit")

    def on_message_begin(self) -> None:
        self._header_fields = 0
        self._request_begun = True
        self._start_header_timer()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > MAX_HEADER_FIELDS:
            self._too_many_fields = True
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._request_begun = False
        self._stop_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_headers = True
        self._header_room = self.max_header_bytes
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._end()  # answered before the body arrived: the rest is not worth reading

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to whatever the parser refused (a callback's exception included)."""
        if self._too_many_fields:
            self._refuse_headers(f"over the limit of {MAX_HEADER_FIELDS} fields")
        else:
            self._refuse(ApiError(400, "malformed_request", "the request is not valid HTTP/1.1"))

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._ending or self.transport.is_closing():
            return
        if not self._request_begun:
            self.transport.close()  # nothing asked, nothing to answer
            return
        logger.warning(
            "refused a request from %s: its headers took over %g s",
            _peer(self.client),
            self.header_timeout,
        )
        why = f"the request's line and headers did not arrive within {self.header_timeout:g} s"
        self._refuse(ApiError(408, "request_timeout", why))

    def _refuse_headers(self, why: str) -> None:
        logger.warning("refused a request from %s: its headers are %s", _peer(self.client), why)
        self._refuse(ApiError(431, "headers_too_large", f"the request's headers are {why}"))

    def _refuse(self, error: ApiError) -> None:
        """Answer ``error`` and end the connection."""
        error.headers["Connection"] = "close"
        response = error_response(error)
        head = [STATUS_LINE[error.status]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", response.body]))
        self._end()

    def _end(self) -> None:
        """Send nothing more, drop what arrives, and close after :data:`LINGER_SECONDS`."""
        self._ending = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"
