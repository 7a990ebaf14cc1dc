"""``GET /workflows`` and ``POST /workflows/{workflow_id}/runs``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.http.body import read_json
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import run_start_in
from dataflows.http.views import workflow_view

__all__ = ["list_workflows", "start_run"]


async def list_workflows(request: Request) -> Response:
    workflows = sorted(context(request).app.registry, key=lambda w: w.id)
    return JsonResponse({"workflows": [workflow_view(w) for w in workflows]})


async def start_run(request: Request) -> Response:
    """202 ``{"run_id"}`` once the run is committed; the same ``idempotency_key`` starts it once."""
    ctx = context(request)
    workflow_id: str = request.path_params["workflow_id"]
    ctx.app.registry.get(workflow_id)  # 404 before reading the body
    data, key = run_start_in(await read_json(request, ctx.max_body_bytes, optional=True))
    run_id = await ctx.store(ctx.app.start(workflow_id, data, idempotency_key=key))
    return JsonResponse({"run_id": run_id}, status_code=202)
