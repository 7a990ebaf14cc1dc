"""``dataflows dev`` and ``worker`` print each failed step attempt and each failed run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from tests.cli.test_processes import Command, database_url, eventually, starter

APP = """
import dataflows as df

app = df.Dataflows()


class HTTPStatusError(Exception):
    pass


def create_task() -> None:
    raise HTTPStatusError("429 Too Many Requests\\nbody: slow down")


@app.workflow("copy", trigger=df.on_event("test/copy"))
async def copy(event: df.Event, step: df.Step) -> None:
    await step.run("create-task", create_task, retry=df.RetryPolicy(retries=1, initial=0.01, jitter=0))
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    with starter(tmp_path, APP) as start:
        yield start


def start_command(start: Callable[..., Command], command: str, **env: str) -> Command:
    """``dataflows worker`` or ``dev`` on ``flows.py``, once its worker has started."""
    extra = ["--poll-interval", "0.05"] if command == "worker" else ["--port", "0"]
    cmd = start(command, "flows.py", *extra, **env)
    eventually(lambda: "started" in cmd.err.read_text(), 20, "the worker to start", cmd)
    return cmd


def start_failing_run(folder: Path) -> str:
    """Send the event from a client of the same database; the run's id, once it has failed."""

    async def go() -> str:
        app = df.Dataflows(database_url(folder))

        @app.workflow("copy", trigger=df.on_event("test/copy"))
        async def copy(event: df.Event, step: df.Step) -> None:
            raise AssertionError("runs only in the command's process")

        async with app:
            run_id = (await app.send("test/copy", {})).run_ids[0]
            run = await app.wait_for_run(run_id, timeout=20)
        assert run.status == "failed"
        return run_id

    return asyncio.run(go())


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_failed_attempts_and_runs_are_printed(
    tmp_path: Path, start: Callable[..., Command], command: str
) -> None:
    cmd = start_command(start, command)
    run_id = start_failing_run(tmp_path)

    expected = [
        f"WARNING  step failed: run={run_id} step=create-task attempt=1/2 "
        "error=HTTPStatusError: 429 Too Many Requests (retrying in 10ms)",
        f"ERROR    step failed: run={run_id} step=create-task attempt=2/2 "
        "error=HTTPStatusError: 429 Too Many Requests (no retries left)",
        f"ERROR    run failed: workflow=copy run={run_id} "
        "error=HTTPStatusError: 429 Too Many Requests (in step create-task)",
    ]
    eventually(lambda: expected[-1] in cmd.err.read_text(), 10, "the run's error line", cmd)
    printed = cmd.err.read_text()
    for line in expected:
        assert line in printed, printed
    assert "body: slow down" not in printed  # one line per failure: the message's first line
    assert cmd.stop() == 0


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_json_lines_carry_the_run_fields(
    tmp_path: Path, start: Callable[..., Command], command: str
) -> None:
    cmd = start_command(start, command, DATAFLOWS_LOG_FORMAT="json")
    run_id = start_failing_run(tmp_path)

    def lines() -> list[dict[str, Any]]:
        text = cmd.err.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    eventually(
        lambda: any(line["message"].startswith("run failed") for line in lines()),
        10,
        "the run's error line",
        cmd,
    )
    about_run = [line for line in lines() if line.get("run_id") == run_id]
    common = {"run_id": run_id, "workflow_id": "copy"}
    error = "HTTPStatusError: 429 Too Many Requests"
    assert [
        {k: v for k, v in line.items() if k not in ("ts", "message")} for line in about_run
    ] == [
        {
            "level": "WARNING",
            "logger": "dataflows.execution",
            **common,
            "step_key": "create-task",
            "attempt": 1,
            "error": error,
        },
        {
            "level": "ERROR",
            "logger": "dataflows.execution",
            **common,
            "step_key": "create-task",
            "attempt": 2,
            "error": error,
        },
        {
            "level": "ERROR",
            "logger": "dataflows.worker",
            **common,
            "step_key": "create-task",
            "error": error,
        },
    ]
    assert about_run[-1]["message"] == (
        f"run failed: workflow=copy run={run_id} error={error} (in step create-task)"
    )
    assert all("ts" in line and "level" in line for line in lines())
    assert cmd.stop() == 0
