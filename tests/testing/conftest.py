"""The app the toolkit's own tests run: workflows that sleep, wait, retry, fire on a schedule."""

from __future__ import annotations

from typing import Any

import pytest

import dataflows as df

#: Calls of the real step functions (a mocked step never gets here).
REAL_CALLS: list[str] = []


def charge_card(amount: int) -> dict[str, Any]:
    REAL_CALLS.append(f"charge {amount}")
    raise RuntimeError("the real payment service is not reachable from tests")


def build_app(*, cron: bool = False) -> df.Dataflows:
    """The test app; ``cron=True`` adds ``hourly``, started at every full hour (every
    ``advance`` past an hour then fires it)."""
    app = df.Dataflows()

    @app.workflow("nap")
    async def nap(event: df.Event, step: df.Step) -> int:
        a: int = await step.run("a", lambda: 1)
        await step.sleep("first", "7d")
        b: int = await step.run("b", lambda: 2)
        await step.sleep("second", "1d")
        return a + b

    @app.workflow("approval", trigger=df.on_event("order/placed"))
    async def approval(event: df.Event, step: df.Step) -> dict[str, Any]:
        decision = await step.wait_for_event(
            "decision", "order/approved", match="data.order", timeout="7d"
        )
        if decision is None:
            return {"order": event.data["order"], "approved": False}
        await step.sleep("cooldown", "24h")
        return {"order": event.data["order"], "approved": True, "by": decision.data["by"]}

    @app.workflow("charge", retries=df.RetryPolicy(retries=3, initial=10, jitter=0))
    async def charge(event: df.Event, step: df.Step) -> Any:
        return await step.run("charge-card", charge_card, event.data["amount"])

    @app.workflow("hourly", trigger=df.cron("0 * * * *") if cron else None)
    async def hourly(event: df.Event, step: df.Step) -> str:
        at: str = await step.run("note", lambda: event.data["scheduled_at"])
        return at

    @app.workflow("parent")
    async def parent(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("child", "nap", {})

    return app


@pytest.fixture
def dataflows_app() -> df.Dataflows:
    REAL_CALLS.clear()
    return build_app()
