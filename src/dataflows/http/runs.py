"""``GET /runs``, ``GET /runs/{run_id}``, ``POST /runs/{run_id}/cancel`` and ``/retry``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import encode_cursor, is_valid_id, runs_query
from dataflows.http.views import run_detail, run_summary
from dataflows.models import Run
from dataflows.records import RunRow

__all__ = ["cancel_run", "get_run", "list_runs", "retry_run"]


async def list_runs(request: Request) -> Response:
    """Newest first; ``next_cursor`` is ``null`` on the last page."""
    ctx = context(request)
    query = runs_query(request.query_params)

    async def read() -> list[RunRow]:
        await ctx.app.open()
        # The store's rows carry created_at as the exact float the cursor needs (a datetime
        # would round it to microseconds, and the next page could repeat or skip a run).
        return await ctx.app.store.list_runs(
            query.workflow_id, query.status, query.limit + 1, query.before
        )

    rows = await ctx.store(read())
    page = rows[: query.limit]
    last = page[-1] if len(rows) > query.limit else None
    return JsonResponse(
        {
            "runs": [run_summary(Run.from_row(row)) for row in page],
            "next_cursor": None if last is None else encode_cursor(last.created_at, last.id),
        }
    )


def _run_id(request: Request) -> str:
    run_id: str = request.path_params["run_id"]
    if not is_valid_id(run_id):  # cannot be stored, so cannot exist: no need to ask the store
        raise RunNotFound(run_id)
    return run_id


async def get_run(request: Request) -> Response:
    ctx = context(request)
    run = await ctx.store(ctx.app.get_run(_run_id(request)))
    return JsonResponse(run_detail(run))


async def cancel_run(request: Request) -> Response:
    """202 if the run is (now, or already) cancelled; 409 if it had already completed or failed."""
    run_id, ctx = _run_id(request), context(request)
    status = await ctx.store(ctx.app.cancel(run_id))
    if status != "cancelled":
        raise InvalidRunState(run_id, status, "cancel")
    return JsonResponse({"run_id": run_id, "status": status}, status_code=202)


async def retry_run(request: Request) -> Response:
    """202 once a failed or cancelled run is queued again; 409 for a run in any other state."""
    run_id, ctx = _run_id(request), context(request)
    status = await ctx.store(ctx.app.retry(run_id))
    return JsonResponse({"run_id": run_id, "status": status}, status_code=202)
