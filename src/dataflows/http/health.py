"""``GET /healthz`` (the process answers) and ``GET /readyz`` (and its database answers too)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from dataflows.errors import StoreUnavailable
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse

__all__ = ["READY_TIMEOUT_SECONDS", "liveness", "readiness"]

#: Readiness probes time out after a second or so: answer 503 before they give up.
READY_TIMEOUT_SECONDS = 2.0


async def liveness(request: Request) -> Response:
    """200 whenever the process serves requests, database or not: restarting the API would not
    bring the database back."""
    return JsonResponse({"status": "ok"})


async def readiness(request: Request) -> Response:
    app = context(request).app
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            # Shielded: a cancelled open would be started again by the next request.
            await asyncio.shield(app.open())
            await app.store.ping()
    except TimeoutError:
        raise StoreUnavailable("the database did not answer in time") from None
    return JsonResponse({"status": "ready"})
