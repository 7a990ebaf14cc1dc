"""``POST /events``: send one event or a list of them, in one transaction."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dataflows.http.body import read_json
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import events_in

__all__ = ["send_events"]


async def send_events(request: Request) -> Response:
    """202 once the events and the runs they start are committed.

    ``ids`` has one id per event in the order sent; ``run_ids`` all the runs started; ``events``
    the same per event, with ``duplicate`` for an id already stored (nothing new was written).
    """
    ctx = context(request)
    events = events_in(await read_json(request, ctx.max_body_bytes))
    results = await ctx.app.send_many([(e.name, e.data, e.id) for e in events])
    run_ids = [sorted(r.run_ids) for r in results]
    per_event = [
        {"id": r.event_id, "run_ids": ids, "duplicate": r.duplicate}
        for r, ids in zip(results, run_ids, strict=True)
    ]
    return JsonResponse(
        {
            "ids": [r.event_id for r in results],
            "run_ids": [run_id for ids in run_ids for run_id in ids],
            "events": per_event,
        },
        status_code=202,
    )
