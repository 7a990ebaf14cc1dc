"""``GET /schedules``, ``POST /schedules/{schedule_id}/pause`` and ``/resume``.

A schedule id is ``<workflow id>:<n>``; a workflow id may hold ``/``, so the routes take the
rest of the path as the id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.errors import ScheduleNotFound
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import is_valid_id
from dataflows.http.views import schedule_view

__all__ = ["list_schedules", "pause_schedule", "resume_schedule"]


async def list_schedules(request: Request) -> Response:
    """Every schedule by id, with when it fires next (``null`` while paused)."""
    ctx = context(request)
    schedules = await ctx.store(ctx.app.list_schedules())
    return JsonResponse({"schedules": [schedule_view(s) for s in schedules]})


def _schedule_id(request: Request) -> str:
    schedule_id: str = request.path_params["schedule_id"]
    if not is_valid_id(schedule_id):  # cannot be stored, so cannot exist
        raise ScheduleNotFound(schedule_id)
    return schedule_id


async def pause_schedule(request: Request) -> Response:
    """200 with the schedule, paused (pausing a paused one changes nothing); 404 if unknown."""
    schedule_id, ctx = _schedule_id(request), context(request)
    schedule = await ctx.store(ctx.app.pause_schedule(schedule_id))
    return JsonResponse(schedule_view(schedule))


async def resume_schedule(request: Request) -> Response:
    """200 with the schedule, firing again from its next tick; 404 if unknown."""
    schedule_id, ctx = _schedule_id(request), context(request)
    schedule = await ctx.store(ctx.app.resume_schedule(schedule_id))
    return JsonResponse(schedule_view(schedule))
