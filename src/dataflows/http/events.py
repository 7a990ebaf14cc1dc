"""``POST /events``: send one event or a list of them, in one transaction."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dataflows.http.body import read_json
from dataflows.http.context import context
from dataflows.http.responses import JsonResponse
from dataflows.http.shapes import events_in
from dataflows.models import SendResult

__all__ = ["send_events", "sent_answer"]


async def send_events(request: Request) -> Response:
    """202 once the events, the runs they start and the waits they resolve are committed.

    ``ids`` has one id per event in the order sent; ``run_ids`` all the runs started and
    ``resumed_run_ids`` all the runs whose ``wait_for_event`` an event resolved; ``events`` the
    same per event, with ``duplicate`` for an id already stored (nothing new was written).
    """
    ctx = context(request)
    events = events_in(await read_json(request, ctx.max_body_bytes))
    results = await ctx.store(ctx.app.send_many([(e.name, e.data, e.id) for e in events]))
    per_event = [sent_answer(r) for r in results]
    return JsonResponse(
        {
            "ids": [r.event_id for r in results],
            "run_ids": [run_id for answer in per_event for run_id in answer["run_ids"]],
            "resumed_run_ids": sorted({i for a in per_event for i in a["resumed_run_ids"]}),
            "events": per_event,
        },
        status_code=202,
    )


def sent_answer(result: SendResult) -> dict[str, Any]:
    """One event's answer: its id, the runs it started and resumed (each sorted), ``duplicate``,
    and the workflows whose run it did not start (``skipped``, with the reason)."""
    return {
        "id": result.event_id,
        "run_ids": sorted(result.run_ids),
        "resumed_run_ids": sorted(result.resumed_run_ids),
        "duplicate": result.duplicate,
        "skipped": [{"workflow_id": w, "reason": why} for w, why in result.skipped],
    }
