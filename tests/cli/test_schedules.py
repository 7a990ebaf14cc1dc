"""``dataflows schedules [list]|pause|resume`` on both stores."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

import dataflows as df
from dataflows.cli import cli
from dataflows.cli.banner import workflows_text
from tests.cli.conftest import Cli
from tests.pg import DbTarget


async def _register(db: DbTarget) -> None:
    """Run a worker of an app with two schedules once: it writes them to the store."""
    app = df.Dataflows(db.url, schema=db.schema or "dataflows")

    @app.workflow(
        "report",
        trigger=[df.cron("0 9 * * 1-5", tz="Europe/Berlin"), df.cron("@hourly", catch_up="none")],
    )
    async def report(event: df.Event, step: df.Step) -> None:
        return None

    async with app, app.worker(poll_interval=0.05):
        pass


def test_list_pause_resume(run_cli: Cli, db: DbTarget) -> None:
    run_cli("migrate")
    assert run_cli("schedules").stdout.startswith("No schedules.")
    assert json.loads(run_cli("schedules", "list", "--json").stdout) == {"schedules": []}

    asyncio.run(_register(db))
    listed = json.loads(run_cli("schedules", "--json").stdout)["schedules"]
    assert [(s["id"], s["expr"], s["tz"], s["catch_up"], s["paused"]) for s in listed] == [
        ("report:0", "0 9 * * 1-5", "Europe/Berlin", "latest", False),
        ("report:1", "@hourly", "UTC", "none", False),
    ]
    assert all(s["next_at"].endswith("Z") for s in listed)

    table = run_cli("schedules", "list").stdout
    for expected in ("report:0", "0 9 * * 1-5", "Europe/Berlin", "09:00 CE", "@hourly", "active"):
        assert expected in table

    assert "paused" in run_cli("schedules", "pause", "report:1").stdout
    paused = json.loads(run_cli("schedules", "pause", "report:1", "--json").stdout)
    assert paused["paused"] is True and paused["next_at"] is None
    assert "paused" in run_cli("schedules").stdout

    resumed = run_cli("schedules", "resume", "report:1").stdout
    assert "resumed" in resumed and "next tick" in resumed
    again = json.loads(run_cli("schedules", "resume", "report:1", "--json").stdout)
    assert again["paused"] is False and again["next_at"] is not None


def test_unknown_schedule(run_cli: Cli) -> None:
    run_cli("migrate")
    for action in ("pause", "resume"):
        result = run_cli("schedules", action, "nope:0", code=1)
        assert "no schedule with id 'nope:0'" in result.output


def test_help_lists_the_subcommands() -> None:
    out = CliRunner().invoke(cli, ["schedules", "--help"]).output
    for name in ("list", "pause", "resume"):
        assert name in out


def test_the_start_banner_shows_cron_triggers() -> None:
    app = df.Dataflows("sqlite:///:memory:")

    @app.workflow("report", trigger=[df.on_event("report/now"), df.cron("@daily", tz="Asia/Tokyo")])
    async def report(event: df.Event, step: df.Step) -> None:
        return None

    assert workflows_text(app).plain == "report  on report/now, cron @daily (Asia/Tokyo)"


def test_the_start_banner_shows_flow_control_options() -> None:
    app = df.Dataflows("sqlite:///:memory:")

    def shop(event: df.Event) -> str:
        return str(event.data["shop"])

    @app.workflow(
        "sync",
        trigger=df.on_event("shop/order"),
        concurrency=df.Concurrency(limit=2, key=shop),
        throttle=df.Throttle(limit=10, period="1m", key=shop),
        rate_limit=df.RateLimit(limit=5, period="1h"),
        debounce=df.Debounce(period="30s", key="data.item", max_wait="5m"),
        idempotency="data.invoice_id",
        start_timeout="90s",
    )
    async def sync(event: df.Event, step: df.Step) -> None:
        return None

    assert workflows_text(app).plain == (
        "sync  on shop/order  [concurrency 2 by shop, throttle 10 per 60s by shop, rate_limit 5 "
        "per 3600s, debounce 30s (max 300s) by data.item, idempotency by data.invoice_id, "
        "start_timeout 90s]"
    )
