"""Failures are visible: failed attempts are logged and kept with the run, timed-out waits shown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner

import dataflows as df
from dataflows.cli import cli
from dataflows.http import create_api
from dataflows.http.openapi import openapi_document
from tests.engine.conftest import ManualClock, step_named, wait_status, worker
from tests.http.conftest import serve
from tests.pg import DbTarget

RUN_DETAIL = jsonschema_rs.Draft202012Validator(
    {
        "$ref": "#/components/schemas/RunDetail",
        "components": openapi_document(secured=False)["components"],
    }
)
#: Tiny delays, no jitter: three retries, four attempts in all.
QUICK = df.RetryPolicy(retries=3, initial=0.001, jitter=0)


class HTTPStatusError(Exception):
    pass


def failing_twice(calls: list[int]) -> Any:
    def create_task() -> dict[str, str]:
        calls.append(df.current_step().attempt)
        if len(calls) <= 2:
            raise HTTPStatusError("429 Too Many Requests\nRetry later, please")
        return {"task_id": "t-1"}

    return create_task


def records(caplog: pytest.LogCaptureFixture, run_id: str) -> list[tuple[str, int, str]]:
    return [
        (r.name, r.levelno, r.getMessage())
        for r in caplog.records
        if r.name.startswith("dataflows") and f"run={run_id}" in r.getMessage()
    ]


async def run_json(app: df.Dataflows, run_id: str) -> dict[str, Any]:
    """``GET /runs/{run_id}`` through the ASGI app, checked against the OpenAPI document."""
    async with serve(create_api(app, environ={})) as client:
        response = await client.get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    RUN_DETAIL.validate(body)
    return body


async def runs_show(db: DbTarget, run_id: str) -> str:
    """``dataflows runs show RUN`` (in a thread: the command runs its own event loop)."""
    args = ["runs", "show", run_id, "--database-url", db.url]
    args += ["--schema", db.schema] if db.schema else []
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# -- failed attempts ---------------------------------------------------------------------------


@pytest.mark.parametrize("inline_retry_limit", [2.0, 0.0], ids=["in-memory", "suspended"])
async def test_each_failed_attempt_is_logged_and_kept_until_the_step_succeeds(
    app: df.Dataflows,
    db: DbTarget,
    caplog: pytest.LogCaptureFixture,
    inline_retry_limit: float,
) -> None:
    caplog.set_level(logging.INFO, logger="dataflows")
    calls: list[int] = []

    @app.workflow("copy")
    async def copy(event: df.Event, step: df.Step) -> Any:
        return await step.run("create-task", failing_twice(calls), retry=QUICK)

    async with worker(app, inline_retry_limit=inline_retry_limit):
        run_id = await app.start("copy")
        run = await app.wait_for_run(run_id, timeout=10)

    assert run.status == "completed" and calls == [1, 2, 3]
    logged = records(caplog, run_id)
    assert [(name, level) for name, level, _ in logged] == [
        ("dataflows.execution", logging.WARNING),
        ("dataflows.execution", logging.WARNING),
    ]
    for number, (_, _, message) in enumerate(logged, 1):
        assert message.startswith(
            f"step failed: run={run_id} step=create-task attempt={number}/4 "
            "error=HTTPStatusError: 429 Too Many Requests (retrying in "
        ), message

    step = step_named(run, "create-task")
    assert (step.status, step.attempts, step.error) == ("completed", 3, None)
    assert [a.attempt for a in step.attempt_errors] == [1, 2]
    for failed in step.attempt_errors:
        assert failed.error["type"] == "HTTPStatusError"
        assert failed.error["message"].startswith("429 Too Many Requests")
        assert failed.started_at and failed.failed_at and failed.retry_at
        assert failed.started_at <= failed.failed_at <= failed.retry_at
    assert step.started_at and step.attempt_errors[1].retry_at
    assert step.attempt_errors[1].retry_at <= step.started_at  # the last attempt came after

    body = await run_json(app, run_id)
    (view,) = body["steps"]
    assert [a["attempt"] for a in view["attempt_errors"]] == [1, 2]
    assert view["attempt_errors"][0]["error"]["type"] == "HTTPStatusError"
    assert view["attempt_errors"][0]["retry_at"].endswith("Z")

    shown = await runs_show(db, run_id)
    assert "attempt 1 failed: HTTPStatusError: 429 Too Many Requests" in shown
    assert "Retry later" not in shown  # one line per attempt: the first line of its message
    assert "attempt 2 failed: HTTPStatusError" in shown
    assert "attempt 3 succeeded" in shown
    assert shown.index("attempt 1 failed") < shown.index("attempt 3 succeeded")

    printed = str(run).splitlines()  # print(run): the step's line, then its failed attempts
    at = next(i for i, line in enumerate(printed) if " create-task " in line)
    assert " completed " in printed[at] and "3 attempts" in printed[at]
    assert printed[at + 1].strip() == "attempt 1 failed: HTTPStatusError: 429 Too Many Requests"
    assert printed[at + 2].strip() == "attempt 2 failed: HTTPStatusError: 429 Too Many Requests"


async def test_a_step_that_fails_for_good_logs_errors_and_lists_every_attempt(
    app: df.Dataflows, db: DbTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dataflows")

    def charge() -> None:
        raise HTTPStatusError(f"402 Payment Required (attempt {df.current_step().attempt})")

    @app.workflow("order")
    async def order(event: df.Event, step: df.Step) -> None:
        await step.run("charge", charge, retry=df.RetryPolicy(retries=2, initial=0.001, jitter=0))

    async with worker(app):
        run_id = await app.start("order")
        run = await app.wait_for_run(run_id, timeout=10)

    assert run.status == "failed"
    logged = records(caplog, run_id)
    assert [level for _, level, _ in logged] == [
        logging.WARNING,
        logging.WARNING,
        logging.ERROR,
        logging.ERROR,
    ]
    assert logged[2][2] == (
        f"step failed: run={run_id} step=charge attempt=3/3 "
        "error=HTTPStatusError: 402 Payment Required (attempt 3) (no retries left)"
    )
    assert logged[3] == (
        "dataflows.worker",
        logging.ERROR,
        f"run failed: workflow=order run={run_id} "
        "error=HTTPStatusError: 402 Payment Required (attempt 3) (in step charge)",
    )

    step = step_named(run, "charge")
    assert (step.status, step.attempts) == ("failed", 3)
    assert [a.attempt for a in step.attempt_errors] == [1, 2, 3]
    messages = [a.error["message"] for a in step.attempt_errors]
    assert messages == [f"402 Payment Required (attempt {n})" for n in (1, 2, 3)]
    assert [a.retry_at is None for a in step.attempt_errors] == [False, False, True]
    assert step.attempt_errors[-1].error == step.error

    body = await run_json(app, run_id)
    attempts = body["steps"][0]["attempt_errors"]
    assert [(a["attempt"], a["retry_at"] is None) for a in attempts] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    shown = await runs_show(db, run_id)
    assert "attempt 3 failed: HTTPStatusError: 402 Payment Required (attempt 3)" in shown
    assert "succeeded" not in shown


async def test_a_non_retriable_failure_is_one_error_line(
    app: df.Dataflows, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dataflows")

    def reject() -> None:
        raise df.NonRetriableError("invalid payload")

    @app.workflow("strict")
    async def strict(event: df.Event, step: df.Step) -> None:
        await step.run("validate", reject)

    async with worker(app):
        run_id = await app.start("strict")
        run = await app.wait_for_run(run_id, timeout=10)

    step_lines = [m for _, _, m in records(caplog, run_id) if m.startswith("step failed")]
    assert step_lines == [
        f"step failed: run={run_id} step=validate attempt=1/4 "
        "error=NonRetriableError: invalid payload (not retried)"
    ]
    assert [a.attempt for a in step_named(run, "validate").attempt_errors] == [1]


async def test_retry_run_starts_the_attempt_list_afresh(app: df.Dataflows) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise HTTPStatusError("503 Service Unavailable")
        return "ok"

    @app.workflow("again")
    async def again(event: df.Event, step: df.Step) -> Any:
        return await step.run("call", flaky, retry=df.RetryPolicy(retries=1, initial=0.001))

    async with worker(app):
        run_id = await app.start("again")
        failed = await app.wait_for_run(run_id, timeout=10)
        assert len(step_named(failed, "call").attempt_errors) == 2
        await app.retry(run_id)
        run = await app.wait_for_run(run_id, timeout=10)

    step = step_named(run, "call")
    assert (run.status, step.attempts, step.attempt_errors) == ("completed", 1, ())


# -- timed-out waits ---------------------------------------------------------------------------


async def test_a_timed_out_wait_is_shown_as_timed_out_and_replays_as_none(
    clock_app: df.Dataflows, clock: ManualClock, db: DbTarget
) -> None:
    seen: list[Any] = []
    flaky: list[int] = []

    def after() -> str:
        flaky.append(1)
        if len(flaky) == 1:
            raise HTTPStatusError("500")  # retried after a suspension: a replay of the wait
        return "done"

    @clock_app.workflow("approve")
    async def approve(event: df.Event, step: df.Step) -> Any:
        decision = await step.wait_for_event("approval", "approval/decided", timeout="1h")
        seen.append(decision)
        await step.run("after", after, retry=df.RetryPolicy(retries=1, initial=0.001, jitter=0))
        return decision is None

    async with worker(clock_app, inline_retry_limit=0):
        run_id = await clock_app.start("approve")
        await wait_status(clock_app, run_id, "waiting")
        clock.advance(3600)
        while not (run := await clock_app.get_run(run_id)).done:
            clock.advance(0.01)  # the retry of "after" waits in the store: let it come due
            await asyncio.sleep(0.01)
        await clock_app.send("approval/decided", {})  # too late: changes nothing

    assert (run.status, run.result) == ("completed", True)
    assert seen == [None, None], "the first run and the replay both got None"
    step = step_named(await clock_app.get_run(run_id), "approval")
    assert (step.kind, step.status, step.output) == ("wait", "timed_out", None)

    body = await run_json(clock_app, run_id)
    statuses = {s["key"]: s["status"] for s in body["steps"]}
    assert statuses == {"approval": "timed_out", "after": "completed"}

    shown = await runs_show(db, run_id)
    assert any("approval" in line and "timed out" in line for line in shown.splitlines())


async def test_a_wait_resolved_by_an_event_stays_completed(app: df.Dataflows) -> None:
    @app.workflow("approve")
    async def approve(event: df.Event, step: df.Step) -> Any:
        decision = await step.wait_for_event("approval", "approval/decided", timeout="1h")
        return decision is not None

    async with worker(app):
        run_id = await app.start("approve")
        await wait_status(app, run_id, "waiting")
        await app.send("approval/decided", {})
        run = await app.wait_for_run(run_id, timeout=10)
        await asyncio.sleep(0)

    assert run.result is True
    assert step_named(run, "approval").status == "completed"
