"""The HTTP API: an ASGI app over a :class:`~dataflows.Dataflows` app.

``create_api(app)`` builds it; ``app_from_env`` is a uvicorn factory
(``uvicorn --factory dataflows.http:app_from_env``) loading the app named by ``DATAFLOWS_APP``.
The store is opened at startup and closed at shutdown. See docs/http-api.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dataflows import __version__
from dataflows.app import Dataflows
from dataflows.errors import DataflowsError, StoreUnavailable
from dataflows.http import (
    approvals,
    events,
    health,
    hooks,
    pages,
    prometheus,
    runs,
    schedules,
    workflows,
)
from dataflows.http.auth import BearerAuthMiddleware, parse_api_keys
from dataflows.http.context import ApiContext, context, store_deadline
from dataflows.http.dashboard import is_dashboard_request
from dataflows.http.dashboard import routes as dashboard_routes
from dataflows.http.errors import ApiError, CatchAllMiddleware, handle_exception
from dataflows.http.openapi import openapi_document
from dataflows.http.responses import JsonResponse
from dataflows.loading import load_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "app_from_env", "create_api", "dataflows_lifespan"]

logger = logging.getLogger("dataflows.http")

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024


def create_api(
    app: Dataflows,
    *,
    api_keys: Sequence[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    environ: Mapping[str, str] | None = None,
    dashboard: bool = False,
) -> Starlette:
    """The ASGI app serving ``app``.

    ``api_keys``: the accepted bearer keys (several at once, for rotation); ``None`` reads the
    comma-separated ``DATAFLOWS_API_KEYS``; none at all leaves the API open. ``environ`` (default
    ``os.environ``) is where keys and webhook secrets (``DATAFLOWS_{SOURCE}_SECRET``) are read.
    ``dashboard=True`` also serves the web dashboard at ``/`` (see docs/dashboard.md).
    """
    env = os.environ if environ is None else environ
    keys = (
        parse_api_keys(env.get("DATAFLOWS_API_KEYS", ""))
        if api_keys is None
        else tuple(key for key in api_keys if key)
    )
    ctx = ApiContext(app, keys, max_body_bytes, env, store_deadline(env))
    api = Starlette(
        routes=(_dashboard_routes() if dashboard else []) + _routes(),
        middleware=[
            Middleware(CatchAllMiddleware),
            Middleware(
                BearerAuthMiddleware,
                keys=keys,
                exempt=is_dashboard_request if dashboard else None,
            ),
        ],
        exception_handlers={
            HTTPException: handle_exception,
            ApiError: handle_exception,
            DataflowsError: handle_exception,
        },
        lifespan=_lifespan(ctx),
    )
    api.state.dataflows = ctx
    return api


@asynccontextmanager
async def dataflows_lifespan(
    api: Starlette, *, worker: bool = False, **worker_options: Any
) -> AsyncIterator[None]:
    """The startup and shutdown of ``api`` (from :func:`create_api`) mounted in another app.

    A mounted app's own lifespan never runs, so the host app's lifespan enters this: it opens
    the store (and checks the webhook sources) as a served API does, and closes it on the way
    out. ``worker=True`` also runs a worker in the same event loop, started after the store
    opened and stopped (gracefully) before it closes; ``worker_options`` go to
    ``app.worker(...)`` (``concurrency=10``, ``poll_interval`` …).
    """
    ctx = getattr(api.state, "dataflows", None)
    if not isinstance(ctx, ApiContext):
        raise TypeError("dataflows_lifespan takes the ASGI app create_api(app) returned")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(api.router.lifespan_context(api))
        if worker:
            await stack.enter_async_context(ctx.app.worker(**worker_options))
        yield


def app_from_env() -> Starlette:
    """A uvicorn factory: the API of the app named by ``DATAFLOWS_APP`` (``module:attribute``
    or a path to a ``.py`` file)."""
    spec = os.environ.get("DATAFLOWS_APP")
    if not spec:
        raise RuntimeError("set DATAFLOWS_APP to the app to serve: module:attribute or file.py")
    return create_api(load_app(spec))


def _dashboard_routes() -> list[Route]:
    return dashboard_routes(runs.get_run, workflows.list_workflows)


def _routes() -> list[Route]:
    return [
        Route("/hooks/{source}", hooks.receive_webhook, methods=["POST"]),
        Route("/events", events.send_events, methods=["POST"]),
        Route("/workflows", workflows.list_workflows, methods=["GET"]),
        Route("/workflows/{workflow_id}/runs", workflows.start_run, methods=["POST"]),
        Route("/runs", runs.list_runs, methods=["GET"]),
        Route("/runs/cancel", runs.cancel_runs, methods=["POST"]),
        Route("/runs/{run_id}", runs.get_run, methods=["GET"]),
        Route("/runs/{run_id}/export", runs.export_run, methods=["GET"]),
        Route("/runs/{run_id}/cancel", runs.cancel_run, methods=["POST"]),
        Route("/runs/{run_id}/retry", runs.retry_run, methods=["POST"]),
        Route("/schedules", schedules.list_schedules, methods=["GET"]),
        # A schedule's id holds its workflow's id, which may hold "/": the rest of the path.
        Route("/schedules/{schedule_id:path}/pause", schedules.pause_schedule, methods=["POST"]),
        Route("/schedules/{schedule_id:path}/resume", schedules.resume_schedule, methods=["POST"]),
        Route("/approvals", approvals.list_approvals, methods=["GET"]),
        Route("/approvals/{token}", approvals.approval_page, methods=["GET"]),
        Route("/approvals/{token}", approvals.decide, methods=["POST"]),
        Route("/static/{name}", pages.static_file, methods=["GET"]),
        Route("/healthz", health.liveness, methods=["GET"]),
        Route("/readyz", health.readiness, methods=["GET"]),
        Route("/metrics", prometheus.metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]


async def _openapi(request: Request) -> Response:
    secured = bool(context(request).api_keys)
    return JsonResponse(openapi_document(secured=secured, version=__version__))


def _lifespan(ctx: ApiContext) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(api: Starlette) -> AsyncIterator[None]:
        if not ctx.api_keys:
            logger.warning("no API keys configured (DATAFLOWS_API_KEYS): the HTTP API is open")
        ctx.sources()  # a misconfigured source fails the start, not the first delivery
        try:
            await ctx.app.open()
        except StoreUnavailable as exc:
            # Serve anyway: /readyz says 503 and every call retries opening until it is back.
            logger.warning("the database is unreachable at startup: %s", exc)
        try:
            yield
        finally:
            await ctx.app.close()

    return lifespan
