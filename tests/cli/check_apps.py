"""Apps the ``dataflows check`` tests load: the code of a run (``v1``), that code with a step
renamed (``v2``), and the rename carried by ``step.patched`` (``v2_patched``)."""

from __future__ import annotations

from typing import Any

import dataflows as df


def charge() -> str:
    return "charged"


def _v1(app: df.Dataflows) -> df.Dataflows:
    @app.workflow("order", trigger=df.on_event("test/order"))
    async def order(event: df.Event, step: df.Step) -> Any:
        await step.run("charge", charge)
        await step.wait_for_event("shipped", "test/shipped", timeout=None)

    return app


def _v2(app: df.Dataflows) -> df.Dataflows:
    @app.workflow("order", trigger=df.on_event("test/order"))
    async def order(event: df.Event, step: df.Step) -> Any:
        await step.run("charge-card", charge)
        await step.wait_for_event("shipped", "test/shipped", timeout=None)

    return app


def _v2_patched(app: df.Dataflows) -> df.Dataflows:
    @app.workflow("order", trigger=df.on_event("test/order"))
    async def order(event: df.Event, step: df.Step) -> Any:
        if await step.patched("charge-card"):
            await step.run("charge-card", charge)
        else:
            await step.run("charge", charge)
        await step.wait_for_event("shipped", "test/shipped", timeout=None)

    return app


v1 = _v1(df.Dataflows())
v2 = _v2(df.Dataflows())
v2_patched = _v2_patched(df.Dataflows())
