"""The ``dataflows dev`` banner's curl command starts a run that completes, for the app served.

The real ``dataflows dev`` serves each app; the printed command is run by a shell with the real
``curl`` (parsed and sent with httpx where no ``curl`` is installed), then the run it started is
followed until it has finished.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import dataflows as df
from dataflows.cli.dev import sample_request
from examples.clickup.standins import StandIns

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "banner-key"

# ``greet`` declares an example; ``audit`` (every people/* event) would fail on it, so the banner
# must start ``greet`` directly rather than send its event.
APP = """
import dataflows as df

app = df.Dataflows()


@app.workflow("greet", trigger=df.on_event("people/joined"), example={"name": "Ada"})
async def greet(event: df.Event, step: df.Step) -> str:
    name = event.data["name"]
    return await step.run("greet", lambda: f"Hello, {name}")


@app.workflow("audit", trigger=df.on_event("people/*"))
async def audit(event: df.Event, step: df.Step) -> str:
    return event.data["badge"]
"""


class Dev:
    """``dataflows dev APP --port 0`` in its own process; output to a file."""

    def __init__(self, app: str, cwd: Path, env: dict[str, str], out: Path) -> None:
        self.out = out
        with out.open("wb") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "dataflows.cli", "dev", app, "--port", "0"],
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def curl(self) -> str:
        """The banner's curl command, once the banner is printed."""
        deadline = time.monotonic() + 30
        while True:
            lines = self.out.read_text(errors="replace").splitlines()
            found = [line for line in lines if line.startswith("curl ")]
            if found:
                return found[0]
            assert self.popen.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "no banner:\n" + "\n".join(lines)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAFLOWS_", "EXAMPLE_"))}
    env.update(
        DATAFLOWS_DATABASE_URL=f"sqlite:///{tmp_path / 'banner.db'}",
        DATAFLOWS_API_KEYS=API_KEY,
        PYTHONUNBUFFERED="1",
    )
    yield env


def run_curl(command: str) -> dict[str, Any]:
    """What the command answers, run as a person would: in a shell that has the API key."""
    if shutil.which("curl"):
        done = subprocess.run(
            ["bash", "-c", command + " --fail-with-body --silent --show-error"],
            env={**os.environ, "DATAFLOWS_API_KEY": API_KEY},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer
    args = shlex.split(command.replace("$DATAFLOWS_API_KEY", API_KEY))
    url = args[args.index("-X") + 2]
    headers = dict(h.split(": ", 1) for h in (args[i + 1] for i, a in enumerate(args) if a == "-H"))
    response = httpx.post(url, content=args[args.index("-d") + 1], headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    answer = response.json()
    return answer


def started_run(answer: dict[str, Any]) -> str:
    if "run_id" in answer:  # POST /workflows/{id}/runs
        return str(answer["run_id"])
    [run_id] = answer["run_ids"]  # POST /events
    return str(run_id)


def finished(database_url: str, run_id: str) -> df.Run:
    async def wait() -> df.Run:
        async with df.Dataflows(database_url) as app:
            return await app.wait_for_run(run_id, timeout=30)

    return asyncio.run(wait())


def test_the_curl_of_a_small_app_starts_a_run_that_completes(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    (tmp_path / "flows.py").write_text(APP)
    dev = Dev("flows.py", tmp_path, dev_env, tmp_path / "dev.out")
    try:
        command = dev.curl()
        assert "/workflows/greet/runs" in command
        assert '-H "Authorization: Bearer $DATAFLOWS_API_KEY"' in command
        run = finished(dev_env["DATAFLOWS_DATABASE_URL"], started_run(run_curl(command)))
        assert (run.workflow_id, run.status, run.result) == ("greet", "completed", "Hello, Ada")
    finally:
        dev.stop()


def test_the_curl_of_the_example_app_starts_a_run_that_completes(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    standins = StandIns()
    standins.start()
    try:
        dev_env.update(standins.env())
        dev = Dev("examples/clickup/app.py", ROOT, dev_env, tmp_path / "dev.out")
        try:
            command = dev.curl()
            assert "/events" in command and "shopify/orders/create" in command
            answer = run_curl(command)
            run = finished(dev_env["DATAFLOWS_DATABASE_URL"], started_run(answer))
            assert (run.workflow_id, run.status) == ("notify-order", "completed")
            [message] = standins.messages  # the order was fetched and posted to Slack
            assert message["text"].startswith("New order #2001 from Ada Lovelace")
        finally:
            dev.stop()
    finally:
        standins.stop()


# -- which request the banner shows --------------------------------------------------------------


async def noop(event: df.Event, step: df.Step) -> None:
    return None


def test_an_example_is_sent_as_the_event_only_its_workflow_takes() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    app.workflow("plain", trigger=df.on_event("a/one"))(noop)
    app.workflow("wild", trigger=df.on_event("b/*"), example={"x": 1})(noop)
    assert sample_request(app) == (
        "Send an event that starts wild:",
        "/events",
        {"name": "b/example", "data": {"x": 1}},
    )


def test_an_example_without_a_trigger_of_its_own_starts_its_workflow() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    app.workflow("direct", example={"x": 1})(noop)
    assert sample_request(app) == ("Start direct:", "/workflows/direct/runs", {"data": {"x": 1}})


def test_without_an_example_the_first_trigger_is_sent_with_empty_data() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    app.workflow("plain", trigger=df.on_event("a/one"))(noop)
    heading, path, body = sample_request(app)
    assert "example=" in heading and (path, body) == ("/events", {"name": "a/one", "data": {}})
    assert sample_request(df.Dataflows("sqlite:///:memory:"))[2]["name"] == "example/hello"


def test_an_example_must_be_a_json_object() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(df.PayloadError):
        app.workflow("bad", example=["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(df.PayloadError):
        app.workflow("bad", example={"when": object()})
