"""The app the browser tests serve with ``dataflows dev``: runs that fail until told not to, runs
that wait for an event, and runs that ask for an approval."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dataflows as df

app = df.Dataflows()  # DATAFLOWS_DATABASE_URL from the environment

#: While this file exists, ``orders`` runs sent ``{"fail": true}`` fail in their ``charge`` step.
FAIL_FLAG = Path(os.environ.get("DASHBOARD_TEST_FAIL_FLAG", "fail-flag"))


def charge(order_id: Any) -> dict[str, Any]:
    if FAIL_FLAG.exists():
        raise ValueError(f"card declined for <script>order {order_id}</script>")
    return {"charged": order_id}


@app.workflow("orders", trigger=df.on_event("order.created"), retries=0)
async def orders(event: df.Event, step: df.Step) -> Any:
    order = await step.run("fetch", lambda: {"id": event.data.get("id")})
    if event.data.get("fail"):
        return await step.run("charge", charge, order["id"])
    paid = await step.wait_for_event("payment", "order.paid", match="data.id", timeout="1h")
    return {"order": order, "paid": paid is not None}


@app.workflow("publish", trigger=df.on_event("post.drafted"))
async def publish(event: df.Event, step: df.Step) -> Any:
    request = await step.request_approval(
        "approval", title=f"Publish {event.data.get('title')}?", timeout=event.data.get("ttl", "1h")
    )
    decision = await step.wait_for_approval(request)
    return {"approved": None if decision is None else decision.approved}
