"""env.decide_approval: decide what a run waits for, as a person would from the link."""

from __future__ import annotations

from typing import Any

import pytest

import dataflows as df
from dataflows.testing import environment


def approval_app() -> df.Dataflows:
    app = df.Dataflows(secret_key="k", public_url="http://dataflows.test")

    @app.workflow("ask")
    async def ask(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval("approval", title="ok?", timeout="2d")
        decision = await step.wait_for_approval(req)
        return None if decision is None else [decision.approved, decision.by, decision.comment]

    return app


async def test_decide_approval_resumes_the_run() -> None:
    async with environment(approval_app()) as env:
        run_id = await env.start("ask")
        await env.assert_waiting(run_id, for_event="dataflows/approval.decided")
        request = await env.decide_approval(run_id, False, by="ana", comment="no")
        assert request.title == "ok?" and request.approve_url.startswith("http://dataflows.test/")
        await env.assert_completed(run_id, [False, "ana", "no"])
        with pytest.raises(AssertionError, match="waits for no approval"):
            await env.decide_approval(run_id)


async def test_an_undecided_request_times_out() -> None:
    async with environment(approval_app()) as env:
        run_id = await env.start("ask")
        await env.advance("2d")
        await env.assert_completed(run_id, None)
