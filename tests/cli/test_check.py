"""``dataflows check APP``: exit 0 when every unfinished run replays compatibly, 1 otherwise."""

from __future__ import annotations

import asyncio
import json

import pytest

import dataflows as df
from tests.cli import check_apps
from tests.cli.conftest import Cli, wait_for_status
from tests.pg import DbTarget


@pytest.fixture
async def waiting(db: DbTarget) -> list[str]:
    """Two runs of ``check_apps.v1`` waiting for their shipment."""
    app = check_apps._v1(df.Dataflows(db.url, schema=db.schema or "dataflows"))
    async with app, app.worker(concurrency=4, poll_interval=0.05):
        ids = [(await app.send("test/order", {"n": n})).run_ids[0] for n in range(2)]
        for run_id in ids:
            await wait_for_status(app, run_id, "waiting")
    return ids


def test_unchanged_and_patched_code_pass(run_cli: Cli, waiting: list[str]) -> None:
    out = run_cli("check", "tests.cli.check_apps:v1").stdout
    assert "Checked 2 unfinished runs" in out
    assert "order: 2 compatible" in out and "All compatible." in out
    out = run_cli("check", "tests.cli.check_apps:v2_patched").stdout
    assert "order: 2 compatible" in out


def test_a_rename_fails_the_check_naming_each_run_and_step(
    run_cli: Cli, waiting: list[str]
) -> None:
    out = run_cli("check", "tests.cli.check_apps:v2", code=1).stdout
    assert "order: 0 compatible, 2 diverging" in out
    for run_id in waiting:
        assert (
            f"run {run_id}: step 'charge-card' is new but recorded steps 'charge', 'shipped' "
            "were not reached" in out
        )
    assert "Some runs would diverge." in out

    report = json.loads(run_cli("check", "tests.cli.check_apps:v2", "--json", code=1).stdout)
    assert (report["compatible"], report["checked"]) == (False, 2)
    [order] = report["workflows"]
    assert (order["workflow_id"], order["compatible"]) == ("order", 0)
    assert sorted(d["run_id"] for d in order["diverging"]) == sorted(waiting)
    first = order["diverging"][0]
    assert (first["outcome"], first["step"], first["recorded"]) == (
        "diverged",
        "charge-card",
        ["charge", "shipped"],
    )


def test_an_empty_store_passes(run_cli: Cli, db: DbTarget) -> None:
    async def create() -> None:
        async with df.Dataflows(db.url, schema=db.schema or "dataflows"):
            pass  # the store exists, with no run

    asyncio.run(create())
    report = json.loads(run_cli("check", "tests.cli.check_apps:v2", "--json").stdout)
    assert (report["compatible"], report["checked"], report["workflows"]) == (True, 0, [])
