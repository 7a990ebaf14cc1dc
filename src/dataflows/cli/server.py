"""Running the HTTP API: a listening socket, uvicorn without its signal handling, the header limit."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
import uvicorn

from dataflows.http.protocol import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER_BYTES

F = TypeVar("F", bound=Callable[..., Any])

#: The header limit's environment variable (``--max-header-bytes``).
MAX_HEADER_BYTES_ENV = "DATAFLOWS_MAX_HEADER_BYTES"
#: The header timeout's environment variable (``--header-timeout``).
HEADER_TIMEOUT_ENV = "DATAFLOWS_HEADER_TIMEOUT"


class Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the command.

    uvicorn re-raises a signal it handled once it has shut down, which would end the process
    with that signal; the commands stop the worker first, then the server, and exit 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def header_limit_options(fn: F) -> F:
    """``--max-header-bytes`` and ``--header-timeout`` (or their ``DATAFLOWS_…`` variables),
    for the commands that serve."""
    fn = click.option(
        "--header-timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_HEADER_TIMEOUT,
        show_default=True,
        envvar=HEADER_TIMEOUT_ENV,
        show_envvar=True,
        help="Seconds a request's line and headers may take to arrive; slower ones get 408.",
    )(fn)
    return click.option(
        "--max-header-bytes",
        type=click.IntRange(min=1024),
        default=DEFAULT_MAX_HEADER_BYTES,
        show_default=True,
        envvar=MAX_HEADER_BYTES_ENV,
        show_envvar=True,
        help="Largest request line and headers of a request; larger ones are answered 431.",
    )(fn)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free port), or one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket names TCP, and without it Nagle meets delayed ACKs (~40 ms per kept-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the server accepts them
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def api_keys() -> list[str]:
    """The API keys configured in ``DATAFLOWS_API_KEYS`` (comma-separated)."""
    return [
        key.strip() for key in os.environ.get("DATAFLOWS_API_KEYS", "").split(",") if key.strip()
    ]
