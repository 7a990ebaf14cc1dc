"""app.override(): a closed app runs on another database and clock for a block, then gets its own
back, even when the block fails."""

from __future__ import annotations

from pathlib import Path

import pytest

import dataflows as df
from dataflows.workflow import Registry


async def test_override_swaps_and_restores(tmp_path: Path) -> None:
    app = df.Dataflows(f"sqlite:///{tmp_path / 'production.db'}", schema="prod")
    clock, registry = app.clock, app.registry

    @app.workflow("hello")
    async def hello(event: df.Event, step: df.Step) -> str:
        return "hi"

    manual = df.ManualClock(1_000_000.0)
    url = f"sqlite:///{tmp_path / 'test.db'}"
    with pytest.raises(RuntimeError, match="boom"):
        async with app.override(database_url=url, clock=manual, registry=Registry()) as same:
            assert same is app and app.clock is manual and app.database_url == url
            with pytest.raises(df.UnknownWorkflow):
                await app.start("hello")  # the registry given has no workflows
            app.registry = registry
            run_id = await app.start("hello")
            assert (await app.get_run(run_id)).created_at.timestamp() == 1_000_000.0
            raise RuntimeError("boom")
    assert (app.database_url, app.schema, app.clock, app.registry) == (
        f"sqlite:///{tmp_path / 'production.db'}",
        "prod",
        clock,
        registry,
    )
    assert (tmp_path / "test.db").exists() and not (tmp_path / "production.db").exists()


async def test_override_needs_a_closed_app(tmp_path: Path) -> None:
    app = df.Dataflows(f"sqlite:///{tmp_path / 'a.db'}")
    async with app:
        with pytest.raises(RuntimeError, match="needs a closed app"):
            async with app.override(clock=df.ManualClock()):
                pass
