"""The app the in-process command tests load as ``tests.cli.sample_app``."""

from __future__ import annotations

import dataflows as df


def hello(name: str) -> str:
    return f"hello {name}"


def boom() -> None:
    raise df.NonRetriableError("kaput")


def register(app: df.Dataflows) -> df.Dataflows:
    @app.workflow("greet", trigger=df.on_event("test/greet"))
    async def greet(event: df.Event, step: df.Step) -> dict[str, str]:
        greeting = await step.run("hello", hello, event.data.get("name", "you"))
        loud = await step.run("shout", str.upper, greeting)
        return {"greeting": loud}

    @app.workflow("fail", trigger=df.on_event("test/fail"))
    async def fail(event: df.Event, step: df.Step) -> None:
        await step.run("boom", boom)

    @app.workflow("wait", trigger=df.on_event("test/wait"))
    async def wait(event: df.Event, step: df.Step) -> bool:
        approval = await step.wait_for_event("approval", "test/approve", timeout="1h")
        return approval is not None

    return app


app = register(df.Dataflows())
