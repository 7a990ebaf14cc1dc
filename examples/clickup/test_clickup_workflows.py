"""The example's workflows, tested with dataflows.testing: days of waiting in milliseconds.

The services are mocked by step name, so nothing here needs the network or the stand-ins:
``copy-to-clickup`` waits up to 7 days for a human approval and then cools down for 24 hours, and the
tests move virtual time across both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dataflows as df
from dataflows.durations import parse_duration
from dataflows.testing import Environment, StepMock
from examples.clickup import app as example

WORK_ITEM_CREATED = "azure_devops/workitem.created"
ITEM = {"id": 42, "title": "Fix login", "type": "Bug", "state": "New", "description": "", "url": ""}
TASK = {"id": "cu-1", "name": "[Bug 42] Fix login", "url": "https://app.clickup.com/t/cu-1"}
COOLDOWN = timedelta(seconds=parse_duration(example.COOLDOWN))
APPROVAL_TIMEOUT = timedelta(seconds=parse_duration(example.APPROVAL_TIMEOUT))
POSTED = {"channel": "#approvals", "ts": "1.0"}
#: What a run waiting in step.wait_for_approval waits for.
APPROVAL_EVENT = "dataflows/approval.decided"


def work_item(item_id: int = 42) -> dict[str, Any]:
    """The data of an Azure DevOps ``workitem.created`` webhook, as the source parses it."""
    return {"resource": {"id": item_id, "fields": {"System.TeamProject": "Demo"}}}


async def start_copy(env: Environment, slack: StepMock | None = None, **create_task: Any) -> str:
    """Mock the services (Slack unless ``slack`` is mocked already), send a work item, and
    return the run it started."""
    env.mock_step("fetch-item", return_value=ITEM)
    env.mock_step("create-task", **(create_task or {"return_value": TASK}))
    if slack is None:
        env.mock_step("ask-approval", return_value=POSTED)
    (run_id,) = (await env.send(WORK_ITEM_CREATED, work_item())).run_ids
    return run_id


async def test_an_approved_task_cools_down_for_a_day(dataflows_env: Environment) -> None:
    env = dataflows_env
    slack = env.mock_step("ask-approval", return_value=POSTED)
    run_id = await start_copy(env, slack)
    await env.assert_waiting(run_id, for_event=APPROVAL_EVENT)
    await env.assert_step(run_id, "create-task", output=TASK, attempts=1)
    # The approvers got the links on Slack.
    (message,) = slack.call_args
    assert "Approve [Bug 42] Fix login: http://dataflows.test/approvals/" in message

    # Another run's approval is not this run's.
    other = await start_copy(env, slack)
    await env.decide_approval(other, approved=False)
    await env.assert_waiting(run_id, for_event=APPROVAL_EVENT)

    await env.advance("3d")
    request = await env.decide_approval(run_id, by="alice")
    assert request.title == "Publish ClickUp task [Bug 42] Fix login?"
    assert request.details == {"task": TASK, "work_item": ITEM}
    await env.assert_waiting(run_id, for_step="cooldown")

    await env.advance(COOLDOWN - timedelta(seconds=1))
    await env.assert_waiting(run_id, for_step="cooldown")
    await env.advance("1s")
    await env.assert_completed(run_id, {"work_item": 42, "task": TASK, "approved": True})


async def test_no_decision_within_the_timeout(dataflows_env: Environment) -> None:
    env = dataflows_env
    run_id = await start_copy(env)
    await env.advance(APPROVAL_TIMEOUT)
    await env.assert_completed(
        run_id, {"work_item": 42, "task": TASK, "approved": False, "timed_out": True}
    )
    steps = await env.steps(run_id)
    assert steps["approval:decision"].status == "timed_out"
    assert "cooldown" not in steps


async def test_a_rate_limited_clickup_call_is_retried_when_asked(
    dataflows_env: Environment,
) -> None:
    env = dataflows_env
    run_id = await start_copy(env, side_effect=[df.RetryAfterError("30s"), TASK])
    await env.assert_waiting(run_id, for_step="create-task")
    await env.advance("30s")
    step = await env.assert_step(run_id, "create-task", output=TASK, attempts=2)
    assert step.attempt_errors[0].error["type"] == "RetryAfterError"
    await env.assert_waiting(run_id, for_event=APPROVAL_EVENT)


async def test_a_rejected_clickup_call_fails_the_run(dataflows_env: Environment) -> None:
    env = dataflows_env
    run_id = await start_copy(env, side_effect=df.NonRetriableError("401 bad token"))
    await env.assert_failed(run_id, "401 bad token")
    await env.assert_step(run_id, "create-task", status="failed", attempts=1)


async def test_an_order_reaches_slack_after_a_429(dataflows_env: Environment) -> None:
    env = dataflows_env
    order = {
        "id": 1001,
        "name": "#1001",
        "customer": "Ana Lima",
        "items": 2,
        "total": "30.00 EUR",
        "financial_status": "paid",
    }
    env.mock_step("fetch-order", return_value=order)
    slack = env.mock_step(
        "notify-slack",
        side_effect=[df.RetryAfterError("2s"), {"channel": "#orders", "ts": "1.0"}],
    )
    (run_id,) = (await env.send("shopify/orders/create", {"id": 1001})).run_ids
    run = await env.wait(run_id)  # time runs on past the Retry-After
    assert run.result == {
        "order": 1001,
        "name": "#1001",
        "message": {"channel": "#orders", "ts": "1.0"},
    }
    assert slack.call_count == 2
    assert slack.call_args == ("New order #1001 from Ana Lima: 2 item(s), 30.00 EUR (paid)",)
