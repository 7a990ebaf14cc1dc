"""``dataflows dev APP``: the HTTP API and a worker in one process, for local development."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import socket
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from dataflows.app import Dataflows
from dataflows.cli.banner import database_text, summary, trigger_names, workflows_text
from dataflows.cli.common import (
    app_argument,
    dashboard_option,
    friendly_errors,
    listen_options,
    start_app,
    stdout,
)
from dataflows.cli.logs import log_level_option, setup_logging
from dataflows.cli.progress import Progress
from dataflows.cli.server import Server, api_keys, base_url, header_limit_options, listen
from dataflows.http import create_api
from dataflows.http.dashboard import stop_streams
from dataflows.http.protocol import ServerConfig
from dataflows.runner import StopSignals
from dataflows.worker import Worker, WorkerOptions
from dataflows.workflow import Workflow


@click.command()
@app_argument(required=True)
@listen_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Runs the worker executes at once.",
)
@header_limit_options
@dashboard_option
@log_level_option
def dev(
    app_spec: str,
    host: str,
    port: int,
    concurrency: int,
    max_header_bytes: int,
    header_timeout: float,
    dashboard: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run APP's HTTP API and a worker in one process (SQLite unless the app says otherwise).

    Prints where the API listens, the webhook URL of every enabled source and a curl command
    that sends an event. The web dashboard is at / unless --no-dashboard. Ctrl-C or SIGTERM
    stops both gracefully.
    """
    setup_logging(log_level, log_format)
    app = start_app(app_spec)
    sock = listen(host, port)
    try:
        with friendly_errors():
            asyncio.run(
                _run(app, app_spec, sock, concurrency, max_header_bytes, header_timeout, dashboard)
            )
    finally:
        sock.close()


async def _run(
    app: Dataflows,
    spec: str,
    sock: socket.socket,
    concurrency: int,
    max_header_bytes: int,
    header_timeout: float,
    dashboard: bool = True,
) -> None:
    with StopSignals("%s: stopping the worker, then the API (signal again to exit now)") as stop:
        config = ServerConfig(
            create_api(app, dashboard=dashboard),
            max_header_bytes=max_header_bytes,
            header_timeout=header_timeout,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
        await _serve(app, spec, sock, concurrency, config, stop.requested, dashboard)


async def _serve(
    app: Dataflows,
    spec: str,
    sock: socket.socket,
    concurrency: int,
    config: ServerConfig,
    stop: asyncio.Event,
    dashboard: bool = False,
) -> None:
    approvals = dev_approval_settings(app, base_url(sock))
    await app.open()
    worker = Worker(app, WorkerOptions(concurrency=concurrency))
    await worker.start()
    server = Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    progress = asyncio.create_task(Progress(worker, 5.0).run())
    try:
        while True:  # uvicorn has no "started" event to wait on
            if server.started or serving.done():
                break
            await asyncio.sleep(0.02)
        if server.started:
            banner, curl = _banner(
                app, spec, base_url(sock), concurrency, approvals, dashboard=dashboard
            )
            console = stdout()
            console.print(banner)
            console.print(curl, soft_wrap=True)  # one line whatever its length, to copy whole
            console.print(Text("\nCtrl-C stops the worker and the API.", style="dim"))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        stop_streams(config.app)
        progress.cancel()
        await worker.stop()
        server.should_exit = True
        await asyncio.gather(serving, progress, return_exceptions=True)
        await app.close()
    serving.result()  # a server that failed on its own reports why


#: Where ``dataflows dev`` keeps the secret key it made for approval links (working directory).
DEV_SECRET_FILE = Path(".dataflows") / "secret-key"


def dev_approval_settings(app: Dataflows, url: str) -> str:
    """Approval links in development: without ``DATAFLOWS_SECRET_KEY``, a key made once and
    kept in ``.dataflows/secret-key`` (so links survive restarts); without
    ``DATAFLOWS_PUBLIC_URL``, the URL dev listens at. What the banner says about it."""
    said = []
    if app.public_url is None:
        app.public_url = url
        said.append(f"links to {url}")
    if app.secret_key is None:
        app.secret_key = _dev_secret_key()
        said.append(f"signed with the key in {DEV_SECRET_FILE} (made by dev)")
    return ", ".join(said) or "configured by the app"


def _dev_secret_key() -> str:
    try:
        key = DEV_SECRET_FILE.read_text().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        DEV_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        fd = os.open(DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key + "\n")
    return key


def _banner(
    app: Dataflows,
    spec: str,
    url: str,
    concurrency: int,
    approvals: str = "",
    *,
    dashboard: bool = False,
) -> tuple[Group, str]:
    """The summary with the sample request's heading, and the request as one curl command."""
    from dataflows.sources import enabled_sources

    keys = api_keys()
    hooks = Text()
    for number, name in enumerate(sorted(enabled_sources(app.sources, os.environ))):
        hooks.append(("\n" if number else "") + f"{url}/hooks/{name}")
    if not hooks.plain:
        hooks = Text(
            "none enabled (set DATAFLOWS_GITHUB_SECRET=… or another source's secret)", "dim"
        )
    rows: list[tuple[str, str | Text]] = [
        ("API", f"{url}   (OpenAPI document: {url}/openapi.json)"),
        ("webhooks", hooks),
        ("database", database_text(app)),
        ("workflows", workflows_text(app)),
        ("worker", f"in this process, concurrency {concurrency}"),
        (
            "API keys",
            f"{len(keys)} configured" if keys else Text("none: the API is open", "yellow"),
        ),
    ]
    if approvals:
        rows.append(("approvals", approvals))
    if dashboard:
        rows.append(("dashboard", f"{url}/"))
    heading, path, body = sample_request(app)
    group = Group(summary(f"dataflows dev  {spec}", rows), Text(), Text(heading, style="bold"))
    return group, _curl(url + path, body, bool(keys))


def sample_request(app: Dataflows) -> tuple[str, str, dict[str, Any]]:
    """What the banner's curl does: a heading, the path it posts to and the JSON body.

    The first workflow declaring ``example`` data is started with it: by an event it alone is
    triggered by (so no other workflow gets data it may not accept), else directly. With no
    example, the event of the first trigger, with empty data: only the app knows what its
    workflows accept.
    """
    for workflow in app.registry:
        if workflow.example is None:
            continue
        for name in _event_names(workflow):
            if [w.id for w in app.registry.triggered_by(name)] == [workflow.id]:
                body = {"name": name, "data": workflow.example}
                return f"Send an event that starts {workflow.id}:", "/events", body
        body = {"data": workflow.example}
        return f"Start {workflow.id}:", f"/workflows/{workflow.id}/runs", body
    names = trigger_names(app)
    name = names[0].replace("*", "example") if names else "example/hello"
    hint = " (declare example={...} on a workflow to send data it accepts)" if names else ""
    return f"Send an event{hint}:", "/events", {"name": name, "data": {}}


def _event_names(workflow: Workflow) -> list[str]:
    names = [getattr(t, "name", None) for t in workflow.triggers]
    return [n.replace("*", "example") for n in names if isinstance(n, str)]


def _curl(url: str, body: dict[str, Any], with_key: bool) -> str:
    auth = ' -H "Authorization: Bearer $DATAFLOWS_API_KEY"' if with_key else ""
    data = shlex.quote(json.dumps(body))
    return f"curl -X POST {url} -H 'Content-Type: application/json'{auth} -d {data}"
