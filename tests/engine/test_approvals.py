"""step.request_approval and step.wait_for_approval: recorded once, decided once, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dataflows as df
from dataflows.approvals import ApprovalLinks, InvalidApprovalLink
from tests.engine.conftest import MakeApp, ManualClock, eventually, wait_status, worker

SECRET = "test-secret-key-of-some-length"
URL = "https://flows.example.com"


def approval_app(make_app: MakeApp, **options: Any) -> df.Dataflows:
    app = make_app(secret_key=SECRET, public_url=URL, **options)
    calls: list[str] = []

    @app.workflow("publish")
    async def publish(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval(
            "approval", title="Publish?", details={"n": event.data.get("n")}, timeout="1h"
        )
        await step.run("notify", calls.append, req.approve_url)
        decision = await step.wait_for_approval(req)
        if decision is None:
            return {"request": req.id, "decision": None}
        return {
            "request": req.id,
            "approved": decision.approved,
            "by": decision.by,
            "comment": decision.comment,
            "at": decision.at.timestamp(),
        }

    app.calls = calls  # type: ignore[attr-defined]
    return app


async def pending_request(app: df.Dataflows, run_id: str) -> df.ApprovalRequest:
    run = await wait_status(app, run_id, "waiting")
    output = next(s.output for s in run.steps if s.key == "approval")
    request = df.ApprovalRequest.from_json(output)
    assert request is not None
    return request


async def test_a_decision_resumes_the_run(make_app: MakeApp) -> None:
    app = approval_app(make_app)
    async with worker(app):
        run_id = await app.start("publish", {"n": 1})
        request = await pending_request(app, run_id)
        assert [r.id for r in await app.pending_approvals()] == [request.id]
        assert request.approve_url.startswith(f"{URL}/approvals/")
        assert request.approve_url.endswith("?decision=approve")
        assert request.reject_url.endswith("?decision=reject")
        assert request.expires_at - request.created_at == pytest.approx(3600, abs=1)
        assert await app.decide_approval(request.id, True, by="alice", comment="ok")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed"
    assert run.result["approved"] is True
    assert (run.result["by"], run.result["comment"]) == ("alice", "ok")
    assert await app.pending_approvals() == []
    state = await app.get_approval(run_id, request.id)
    assert state is not None and state.decision is not None and state.decision.approved
    assert [s.key for s in run.steps] == ["approval", "notify", "approval:decision"]


async def test_only_the_first_decision_counts(make_app: MakeApp) -> None:
    app = approval_app(make_app)
    async with worker(app):
        run_id = await app.start("publish", {"n": 2})
        request = await pending_request(app, run_id)
        outcomes = await asyncio.gather(
            *(app.decide_approval(request.id, n % 2 == 0, by=f"user-{n}") for n in range(6))
        )
        assert sorted(outcomes) == [False] * 5 + [True]
        run = await app.wait_for_run(run_id, timeout=10)
    winner = outcomes.index(True)
    assert run.result["approved"] is (winner % 2 == 0)
    assert run.result["by"] == f"user-{winner}"


async def has_steps(app: df.Dataflows, run_id: str) -> bool:
    return bool((await app.get_run(run_id)).steps)


async def test_a_decision_before_the_wait_is_kept(make_app: MakeApp) -> None:
    app = make_app(secret_key=SECRET, public_url=URL)
    gate = asyncio.Event()

    @app.workflow("slow")
    async def slow(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval("approval", title="t", timeout="1h")
        await step.run("notify", gate.wait)
        decision = await step.wait_for_approval(req)
        return None if decision is None else decision.approved

    async with worker(app):
        run_id = await app.start("slow")
        await eventually(lambda: has_steps(app, run_id))
        request = df.ApprovalRequest.from_json((await app.get_run(run_id)).steps[0].output)
        assert request is not None
        assert await app.decide_approval(request.id, False)
        gate.set()
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.result is False


async def test_replay_returns_the_same_request(make_app: MakeApp) -> None:
    app = approval_app(make_app)
    async with worker(app):
        run_id = await app.start("publish", {"n": 3})
        request = await pending_request(app, run_id)
        assert await app.decide_approval(request.id, True)
        run = await app.wait_for_run(run_id, timeout=10)
    # The notify step saw the URL of the request recorded before the run suspended; the run
    # replayed request_approval when it resumed, and got the same request back.
    assert app.calls == [request.approve_url]  # type: ignore[attr-defined]
    assert run.result["request"] == request.id


async def test_timeout_returns_none(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = approval_app(make_app, clock=clock)
    async with worker(app):
        run_id = await app.start("publish", {"n": 4})
        request = await pending_request(app, run_id)
        clock.advance(3601)
        run = await app.wait_for_run(run_id, timeout=10)
        assert run.result == {"request": request.id, "decision": None}
        # Too late: the decision is stored but resumes nothing.
        await app.decide_approval(request.id, True)
    links = ApprovalLinks(SECRET, URL)
    token = request.approve_url.rsplit("/", 1)[1].split("?")[0]
    with pytest.raises(InvalidApprovalLink) as caught:
        links.verify(token, clock.now())
    assert caught.value.reason == "expired"


async def test_missing_settings_fail_the_call_naming_them(make_app: MakeApp) -> None:
    app = make_app(public_url=URL)
    app.secret_key = None

    @app.workflow("nokey")
    async def nokey(event: df.Event, step: df.Step) -> Any:
        await step.request_approval("approval", title="t", timeout="1h")

    async with worker(app):
        run_id = await app.start("nokey")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    assert run.error is not None and "DATAFLOWS_SECRET_KEY" in run.error["message"]

    app2 = make_app(secret_key=SECRET)
    app2.public_url = None

    @app2.workflow("nourl")
    async def nourl(event: df.Event, step: df.Step) -> Any:
        await step.request_approval("approval", title="t", timeout="1h")

    async with worker(app2):
        run_id = await app2.start("nourl")
        run = await app2.wait_for_run(run_id, timeout=10)
    assert run.error is not None and "DATAFLOWS_PUBLIC_URL" in run.error["message"]


async def test_details_must_be_json(make_app: MakeApp) -> None:
    app = make_app(secret_key=SECRET, public_url=URL)

    @app.workflow("bad-details")
    async def bad_details(event: df.Event, step: df.Step) -> Any:
        await step.request_approval("approval", title="t", details={"x": object()}, timeout="1h")

    async with worker(app):
        run = await app.wait_for_run(await app.start("bad-details"), timeout=10)
    assert run.status == "failed" and run.steps == ()
    assert run.error is not None and "approval's details" in run.error["message"]
