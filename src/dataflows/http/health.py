"""``GET /healthz`` (the process answers) and ``GET /readyz`` (and its database answers too)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.http.context import context
from dataflows.http.responses import JsonResponse

__all__ = ["liveness", "readiness"]


async def liveness(request: Request) -> Response:
    """200 whenever the process serves requests, database or not: restarting the API would not
    bring the database back."""
    return JsonResponse({"status": "ok"})


async def readiness(request: Request) -> Response:
    """200 once the database answers a query; 503 within the store deadline when it does not."""
    ctx = context(request)

    async def ping() -> None:
        await ctx.app.open()
        await ctx.app.store.ping()

    await ctx.store(ping())
    return JsonResponse({"status": "ready"})
