"""The deploy check: every unfinished run dry-replayed against new code, no step function called."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from dataflows.replay import WorkflowReport, export_history, pages, replay
from dataflows.replay import check_runs as check_store
from tests.engine.conftest import MakeApp, wait_status, worker


def v1_app(app: df.Dataflows, effects: list[str]) -> None:
    @app.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        def charge() -> str:
            effects.append("charge")
            return "charged"

        await step.run("charge", charge)
        await step.wait_for_event("go", "go", match="data.n", timeout=None)
        await step.run("ship", lambda: effects.append("ship"))

    @app.workflow("fanout")
    async def fanout(event: df.Event, step: df.Step) -> Any:
        async def first() -> None:
            await step.run("a1", lambda: effects.append("a1"))
            await step.sleep("pause", 0.3)
            await step.wait_for_event("go", "go", match="data.n", timeout=None)
            await step.run("a2", lambda: effects.append("a2"))

        async def second() -> None:
            for name in ("c1", "c2"):
                await step.run(name, lambda name=name: effects.append(name))

        await asyncio.gather(first(), second())


async def check_runs(app: df.Dataflows, **options: Any) -> dict[str, WorkflowReport]:
    await app.open()
    return await check_store(app.store, app.registry, **options)


async def seed(app: df.Dataflows, effects: list[str], orders: int = 3) -> list[str]:
    v1_app(app, effects)
    ids = []
    async with worker(app):
        for n in range(orders):
            ids.append(await app.start("order", {"n": n}))
        ids.append(await app.start("fanout", {"n": 99}))
        for run_id in ids:
            await wait_status(app, run_id, "waiting")
    return ids


async def test_unchanged_code_is_compatible_and_no_step_function_runs(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    await seed(app, effects)
    before = list(effects)
    same = make_app()
    v1_app(same, effects)
    reports = await check_runs(same, page_size=2)
    assert {w: (r.compatible, r.diverging) for w, r in reports.items()} == {
        "order": (3, []),
        "fanout": (1, []),
    }
    assert effects == before


async def test_renamed_step_and_another_kind_are_reported_with_the_step(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    ids = await seed(app, effects, orders=2)
    changed = make_app()

    @changed.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        await step.run("charge-v2", lambda: effects.append("charge-v2"))
        await step.wait_for_event("go", "go", match="data.n", timeout=None)

    @changed.workflow("fanout")
    async def fanout(event: df.Event, step: df.Step) -> Any:
        await step.sleep("a1", "1s")  # recorded as a step.run

    reports = await check_runs(changed)
    order_report = reports["order"]
    assert order_report.compatible == 0
    assert sorted(v.run_id for v in order_report.diverging) == sorted(ids[:2])
    verdict = order_report.diverging[0]
    assert (verdict.outcome, verdict.step, verdict.recorded) == (
        "diverged",
        "charge-v2",
        ("charge", "go"),
    )
    assert "step 'charge-v2' is new but recorded steps 'charge', 'go' were not reached" in (
        verdict.detail
    )
    [kind] = reports["fanout"].diverging
    assert (kind.step, kind.recorded) == ("a1", ("a1",))
    assert "recorded as a 'run' step, now called as 'sleep'" in kind.detail
    assert "charge-v2" not in effects


async def test_patched_code_is_compatible_with_old_runs(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    await seed(app, effects, orders=2)
    patched = make_app()
    v1_app(patched, effects)
    patched.registry._workflows.pop("order")

    @patched.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        if await step.patched("charge-v2"):
            await step.run("charge-v2", lambda: effects.append("charge-v2"))
        else:
            await step.run("charge", lambda: effects.append("charge"))
        await step.wait_for_event("go", "go", match="data.n", timeout=None)

    reports = await check_runs(patched)
    assert (reports["order"].compatible, reports["order"].diverging) == (2, [])


async def test_missing_workflow_and_raising_code_are_reported(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    effects: list[str] = []
    await seed(app, effects, orders=1)
    changed = make_app()

    @changed.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        charged = await step.run("charge", lambda: "x")
        raise RuntimeError(f"cannot handle {charged}")

    reports = await check_runs(changed)
    [error] = reports["order"].diverging
    assert error.outcome == "error"
    assert error.detail == "the code raised RuntimeError: cannot handle charged"
    [missing] = reports["fanout"].diverging
    assert missing.detail == "workflow 'fanout' is not in the app"


async def test_pages_are_read_by_keyset_and_finished_runs_are_skipped(
    app: df.Dataflows,
) -> None:
    effects: list[str] = []
    ids = await seed(app, effects, orders=4)
    async with worker(app):
        await app.send("go", {"n": 0})
        await app.wait_for_run(ids[0], timeout=15)
    seen = [[run.id for run in page] async for page in pages(app.store, page_size=2)]
    assert [len(p) for p in seen] == [2, 2]
    assert [i for p in seen for i in p] == sorted(ids[1:])
    only = [run.id async for page in pages(app.store, "fanout") for run in page]
    assert only == [ids[-1]]


async def test_an_exported_history_replays_against_the_code(
    app: df.Dataflows, make_app: MakeApp, tmp_path: Path
) -> None:
    effects: list[str] = []
    await seed(app, effects, orders=1)
    [page] = [p async for p in pages(app.store, "order")]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(export_history(page[0])))

    same = make_app()
    v1_app(same, effects)
    assert (await replay(same, path)).outcome == "compatible"

    changed = make_app()

    @changed.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        await step.run("charge-v2", lambda: None)

    with pytest.raises(df.NonDeterminismError, match="'charge-v2' is new"):
        await replay(changed, path)
    with pytest.raises(ValueError, match="not 'fanout'"):
        await replay(same, path, workflow_id="fanout")

    other = make_app()

    @other.workflow("unrelated")
    async def unrelated(event: df.Event, step: df.Step) -> None:
        pass

    with pytest.raises(ValueError, match="which the app lacks"):
        await replay(other, path)
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="not a dataflows history"):
        await replay(same, bogus)
    bogus.write_text("not json")
    with pytest.raises(ValueError, match="not a dataflows history"):
        await replay(same, bogus)
