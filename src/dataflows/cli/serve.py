"""``dataflows serve APP``: the HTTP API only, in one or several server processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile
from typing import Any

import click

from dataflows.app import Dataflows
from dataflows.cli.banner import database_text, summary
from dataflows.cli.common import (
    APP_ENV,
    app_argument,
    dashboard_option,
    friendly_errors,
    listen_options,
    start_app,
    stderr,
    stdout,
)
from dataflows.cli.logs import FORMAT_ENV, LEVEL_ENV, log_level_option, setup_logging
from dataflows.cli.server import Server, api_keys, base_url, header_limit_options, listen
from dataflows.http.protocol import ServerConfig
from dataflows.metrics import MULTIPROCESS_DIR
from dataflows.runner import StopSignals

log = logging.getLogger("dataflows.cli")
#: Tells the server processes of ``--workers N`` whether to serve the dashboard.
DASHBOARD_ENV = "DATAFLOWS_DASHBOARD"
OPEN_API_WARNING = (
    "WARNING: no API keys are configured (DATAFLOWS_API_KEYS is unset or empty): "
    "the API is open to anyone who can reach it. Set DATAFLOWS_API_KEYS=key1,key2 to require "
    "'Authorization: Bearer <key>'."
)


@click.command()
@app_argument(required=True)
@listen_options
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes sharing the port.",
)
@header_limit_options
@dashboard_option
@log_level_option
def serve(
    app_spec: str,
    host: str,
    port: int,
    workers: int,
    max_header_bytes: int,
    header_timeout: float,
    dashboard: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Serve APP's HTTP API (no worker: run `dataflows worker` for that).

    With --workers N, N server processes share the port; each loads APP from DATAFLOWS_APP.
    Without DATAFLOWS_API_KEYS the API needs no credentials, and this says so at start.
    The web dashboard is at / unless --no-dashboard.
    """
    setup_logging(log_level, log_format)
    app = start_app(app_spec)  # fail here, once, if APP or its database is wrong
    if not api_keys():
        if log_format.lower() == "json":  # every line on stderr a JSON object
            log.warning(OPEN_API_WARNING.removeprefix("WARNING: "))
        else:
            stderr().print(OPEN_API_WARNING, style="bold red")
    sock = listen(host, port)
    os.environ[APP_ENV] = app_spec
    os.environ[DASHBOARD_ENV] = "1" if dashboard else "0"
    try:
        stdout().print(_banner(app, app_spec, base_url(sock), workers, dashboard))
        if workers == 1:
            with friendly_errors():
                asyncio.run(_serve_here(app, sock, max_header_bytes, header_timeout, dashboard))
        else:
            # The server processes start afresh: they log as this one does, told by these.
            os.environ[FORMAT_ENV] = log_format
            os.environ[LEVEL_ENV] = log_level
            _serve_processes(sock, workers, max_header_bytes, header_timeout, log_level)
    finally:
        sock.close()


def _banner(app: Dataflows, spec: str, url: str, workers: int, dashboard: bool = True) -> object:
    processes = "this process" if workers == 1 else f"{workers} processes"
    keys = len(api_keys())
    return summary(
        f"dataflows serve  {spec}",
        [
            ("API", f"{url}   ({processes})"),
            ("database", database_text(app)),
            ("API keys", f"{keys} configured" if keys else "none: the API is open"),
            ("dashboard", f"{url}/" if dashboard else "off (--no-dashboard)"),
        ],
    )


async def _serve_here(
    app: Dataflows,
    sock: socket.socket,
    max_header_bytes: int,
    header_timeout: float,
    dashboard: bool = True,
) -> None:
    from dataflows.http import create_api
    from dataflows.http.dashboard import stop_streams

    api = create_api(app, dashboard=dashboard)
    config = ServerConfig(
        api,
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
        log_config=None,
        timeout_graceful_shutdown=30,
    )
    server = Server(config)

    def stop() -> None:
        stop_streams(api)
        server.should_exit = True

    def again(sig: signal.Signals) -> None:  # stop waiting for open requests, then close as usual
        log.info("%s: stopping the API", sig.name)
        server.force_exit = True

    try:
        with StopSignals("%s: stopping the API", stop, again):
            await server.serve(sockets=[sock])
    finally:
        await app.close()


def _serve_processes(
    sock: socket.socket, workers: int, max_header_bytes: int, header_timeout: float, log_level: str
) -> None:
    config = ServerConfig(
        "dataflows.cli.serve:server_process_api",
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
        log_config=None,  # each process's records go to the handler server_process_api sets up
        factory=True,
        workers=workers,
        log_level=log_level,
    )
    # uvicorn's supervisor: it restarts a server process that dies and stops them all on SIGTERM.
    from uvicorn.supervisors import Multiprocess

    with tempfile.TemporaryDirectory(prefix="dataflows-metrics-") as shared:
        # The server processes keep their counters in files here, and whichever one answers
        # GET /metrics adds up all of them (prometheus-client's multiprocess mode). Each process
        # reads this at its first import of prometheus_client, so it is set before they start.
        os.environ.setdefault(MULTIPROCESS_DIR, shared)
        Multiprocess(config, sockets=[sock]).run()


def server_process_api() -> Any:
    """The uvicorn factory of each server process under ``--workers``: logging as the command
    was told (text or JSON lines, from ``DATAFLOWS_LOG_FORMAT`` and ``DATAFLOWS_LOG_LEVEL``),
    then the API of the app named by ``DATAFLOWS_APP``."""
    setup_logging(os.environ.get(LEVEL_ENV, "info"), os.environ.get(FORMAT_ENV, "text"))
    from dataflows.http import create_api
    from dataflows.loading import load_app

    spec = os.environ[APP_ENV]
    return create_api(load_app(spec), dashboard=os.environ.get(DASHBOARD_ENV, "1") == "1")
