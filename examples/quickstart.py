"""A complete dataflows app, end to end on SQLite: ``python examples/quickstart.py``.

A work item arrives, is fetched, a task is created for it, the run waits for an approval event,
cools down, and finishes. The third-party calls are local stand-ins so the example runs anywhere;
each one counts its calls, and the output shows every step ran exactly once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

import dataflows as df

DATABASE_URL = os.environ.get("DATAFLOWS_DATABASE_URL", "sqlite:///.dataflows/example.db")
COOLDOWN = os.environ.get("EXAMPLE_COOLDOWN", "2s")

app = df.Dataflows(DATABASE_URL)
calls: Counter[str] = Counter()


def get_work_item(item_id: int) -> dict[str, object]:
    """Stand-in for Azure DevOps' work item API."""
    calls["get_work_item"] += 1
    return {"id": item_id, "title": f"Work item {item_id}", "state": "New"}


async def create_task(item: dict[str, object]) -> dict[str, object]:
    """Stand-in for ClickUp's create-task API; the idempotency key makes retries safe."""
    calls["create_task"] += 1
    key = df.current_step().idempotency_key
    return {"task_id": f"task-{item['id']}", "name": item["title"], "idempotency_key": key}


@app.workflow(
    "copy-to-clickup",
    trigger=df.on_event("azure_devops/workitem.created"),
    example={"task_id": "task-42", "resource": {"id": 42}},
)
async def copy_to_clickup(event: df.Event, step: df.Step) -> dict[str, object]:
    item = await step.run("fetch-item", get_work_item, event.data["resource"]["id"])
    task = await step.run("create-task", create_task, item)
    decision = await step.wait_for_event(
        "approval", "approval/decided", match="data.task_id", timeout="7d"
    )
    if decision is None:
        return {"task": task, "approved": False}
    await step.sleep("cooldown", COOLDOWN)
    return {"task": task, "approved": decision.data["approved"]}


async def main() -> int:
    async with app, app.worker(concurrency=4):
        sent = await app.send(
            "azure_devops/workitem.created", {"task_id": "task-42", "resource": {"id": 42}}
        )
        run_id = sent.run_ids[0]
        print(f"event {sent.event_id} started run {run_id}")
        while (await app.get_run(run_id)).status != "waiting":  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.05)
        run = await app.get_run(run_id)
        print(f"run is {run.status}: {run.wait_reason}; sending the approval")
        await app.send("approval/decided", {"task_id": "task-42", "approved": True})
        run = await app.wait_for_run(run_id, timeout=60)
    print(run)  # outcome, result and the step timeline
    print(f"third-party calls: {dict(calls)}")
    ok = run.status == "completed" and all(n == 1 for n in calls.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
