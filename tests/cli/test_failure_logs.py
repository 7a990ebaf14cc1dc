"""``dataflows dev`` and ``worker`` print each failed step attempt and each failed run."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from tests.cli.test_processes import Command, eventually

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
def folder(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(APP)
    return tmp_path


@pytest.fixture
def commands() -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for cmd in started:
        if cmd.popen.poll() is None:
            cmd.popen.kill()
            cmd.popen.wait(10)


def start_failing_run(folder: Path) -> str:
    """Send the event from a client of the same database; the run's id, once it has failed."""

    async def go() -> str:
        app = df.Dataflows(f"sqlite:///{folder / 'flows.db'}")

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
    folder: Path, commands: list[Command], command: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    env["DATAFLOWS_DATABASE_URL"] = f"sqlite:///{folder / 'flows.db'}"
    extra = ["--poll-interval", "0.05"] if command == "worker" else ["--port", "0"]
    args = [command, "flows.py", *extra]
    cmd = Command(folder, args, env)
    commands.append(cmd)
    eventually(lambda: "started" in cmd.err.read_text(), 20, "the worker to start", cmd)

    run_id = start_failing_run(folder)

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
    folder: Path, commands: list[Command], command: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    env["DATAFLOWS_DATABASE_URL"] = f"sqlite:///{folder / 'flows.db'}"
    env["DATAFLOWS_LOG_FORMAT"] = "json"
    extra = ["--poll-interval", "0.05"] if command == "worker" else ["--port", "0"]
    cmd = Command(folder, [command, "flows.py", *extra], env)
    commands.append(cmd)
    eventually(lambda: "started" in cmd.err.read_text(), 20, "the worker to start", cmd)

    run_id = start_failing_run(folder)

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
