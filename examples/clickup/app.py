"""The example app: Azure DevOps work items become ClickUp tasks; Shopify orders reach Slack.

Run it with ``scripts/run-example`` (stand-in services, SQLite, no credentials needed), or
against the real services with ``dataflows dev examples/clickup/app.py`` and the environment
variables listed in docs/example.md.

``copy-to-clickup``: a work item is created in Azure DevOps → fetch it → create a ClickUp task
(within a budget of 100 ClickUp calls a minute shared by every worker) → ask for a human approval
and post its links to Slack → wait up to 7 days for the decision → cool down (24 h) → done.
Approval links need ``DATAFLOWS_SECRET_KEY`` and ``DATAFLOWS_PUBLIC_URL`` (``dataflows dev`` fills
both in).

``notify-order``: a Shopify order is created → fetch the current order → post it to Slack
(rate limits are retried no sooner than Slack's ``Retry-After``).
"""

from __future__ import annotations

import os
from typing import Any

import dataflows as df
from dataflows.sources import azure_devops, shopify

try:  # imported as a package (examples.clickup.app) …
    from . import services
except ImportError:  # … or loaded from its path by `dataflows dev examples/clickup/app.py`
    import services  # type: ignore[no-redef, import-not-found, unused-ignore]

app = df.Dataflows()  # DATAFLOWS_DATABASE_URL and DATAFLOWS_SCHEMA from the environment

#: Demos and tests shorten the waits; production keeps the defaults.
COOLDOWN = os.environ.get("EXAMPLE_COOLDOWN", "24h")
APPROVAL_TIMEOUT = os.environ.get("EXAMPLE_APPROVAL_TIMEOUT", "7d")

#: ClickUp allows 100 requests a minute per token; this app calls it with one token, from as
#: many workers as you run. Every worker keeps to it together: the budget is held in the database.
app.rate_limit("clickup", limit=100, period="1m")


@app.workflow("copy-to-clickup", trigger=azure_devops.on_work_item_created())
async def copy_to_clickup(event: df.Event, step: df.Step) -> dict[str, Any]:
    resource = event.data["resource"]
    project = resource.get("fields", {}).get("System.TeamProject")
    item = await step.run("fetch-item", services.get_work_item, resource["id"], project)
    task = await step.run("create-task", services.create_task, item, rate_limit="clickup")
    # Signed, single-use links that expire with the timeout; replays return the same request.
    request = await step.request_approval(
        "approval",
        title=f"Publish ClickUp task {task['name']}?",
        details={"task": task, "work_item": item},
        timeout=APPROVAL_TIMEOUT,
    )
    await step.run(
        "ask-approval",
        services.post_message,
        f"Approve {task['name']}: {request.approve_url}\nReject: {request.reject_url}",
    )
    decision = await step.wait_for_approval(request)
    if decision is None:
        return {"work_item": item["id"], "task": task, "approved": False, "timed_out": True}
    await step.sleep("cooldown", COOLDOWN)
    return {"work_item": item["id"], "task": task, "approved": decision.approved}


# `example`: the data `dataflows dev` prints a curl command with (an order the stand-in knows).
@app.workflow("notify-order", trigger=shopify.on("orders/create"), example={"id": 1001})
async def notify_order(event: df.Event, step: df.Step) -> dict[str, Any]:
    order = await step.run("fetch-order", services.get_order, event.data["id"])
    text = (
        f"New order {order['name']} from {order['customer'] or 'a guest'}: "
        f"{order['items']} item(s), {order['total']} ({order['financial_status']})"
    )
    message = await step.run("notify-slack", services.post_message, text)
    return {"order": order["id"], "name": order["name"], "message": message}
