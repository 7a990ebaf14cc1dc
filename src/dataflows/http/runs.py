"""``GET /runs``, ``GET /runs/{run_id}`` (and ``/export``), ``POST /runs/{run_id}/cancel`` and ``/retry``, and
``POST /runs/cancel`` (bulk)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.app import check_cancel_filters
from dataflows.errors import InvalidRunState, RunNotFound
from dataflows.http.body import read_json
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import cancel_filters_in, encode_cursor, is_valid_id, runs_query
from dataflows.http.views import run_detail, run_summary
from dataflows.models import Run
from dataflows.records import RunRow

__all__ = ["cancel_run", "cancel_runs", "export_run", "get_run", "list_runs", "retry_run"]

#: Runs a bulk cancel cancels per transaction (each batch answers within the store deadline).
CANCEL_BATCH = 500


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


async def export_run(request: Request) -> Response:
    """The run's history, as ``dataflows runs export`` writes it."""
    ctx = context(request)
    return JsonResponse(await ctx.store(ctx.app.export_run(_run_id(request))))


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


async def cancel_runs(request: Request) -> Response:
    """200 ``{"cancelled": n}`` once every unfinished run matching the filters is cancelled,
    with its children; batch by batch, each within the store deadline (a batch that misses it
    answers 503, the batches before it stay done: sending the request again goes on)."""
    ctx = context(request)
    f = cancel_filters_in(await read_json(request, ctx.max_body_bytes, optional=True))
    statuses = check_cancel_filters(f.workflow_id, f.status, f.created_after, f.created_before)
    after = None if f.created_after is None else f.created_after.timestamp()
    before = None if f.created_before is None else f.created_before.timestamp()
    await ctx.store(ctx.app.open())
    total = 0
    while True:
        ids = await ctx.store(
            ctx.app.store.cancel_matching(
                f.workflow_id, statuses, after, before, CANCEL_BATCH, ctx.app.clock.now()
            )
        )
        total += len(ids)
        if len(ids) < CANCEL_BATCH:
            return JsonResponse({"cancelled": total})
