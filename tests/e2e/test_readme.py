"""The README's complete example and examples/quickstart.py, run as a new user runs them: pasted
into a file in an empty directory and started with ``python``, on the default SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import dataflows as df
from dataflows.cli.loading import load_app
from tests.cli.test_banner import Dev, dev_env, finished, run_curl, started_run
from tests.e2e.conftest import wait_for

__all__ = ["dev_env"]  # the fixture, imported for the dev test

ROOT = Path(__file__).resolve().parents[2]
STEP_KEYS = ("fetch-item", "create-task", "approval", "cooldown")


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A complete example") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's complete example has no python block"
    return found.group(1)


def run_python(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_timeline(output: str) -> None:
    assert re.search(r"^run \S+ of copy-to-clickup: completed in \d", output, re.M), output
    assert '"approved": true' in output, output
    for key in STEP_KEYS:
        line = next((ln for ln in output.splitlines() if f" {key} " in ln), None)
        assert line is not None and " completed " in line, (key, output)
    assert "StepInfo(" not in output and "Run(" not in output, output


def test_readme_example_runs_to_completion(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(readme_example())
    done = run_python(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_timeline(done.stdout)
    # The default store is a file under the working directory.
    assert (tmp_path / ".dataflows" / "dataflows.db").exists()


def test_readme_example_loads_as_an_app_without_running(tmp_path: Path) -> None:
    """The ``__main__`` guard: ``dataflows dev app.py`` imports the file and finds the app; the
    module's demo does not run on import."""
    script = tmp_path / "app.py"
    script.write_text(readme_example())
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        app = load_app(str(script))
    finally:
        os.chdir(cwd)
    assert [w.id for w in app.registry] == ["copy-to-clickup"]
    assert not (tmp_path / ".dataflows").exists()


def test_quickstart_prints_its_timeline(tmp_path: Path) -> None:
    done = run_python(ROOT / "examples" / "quickstart.py", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_timeline(done.stdout)
    assert "third-party calls: {'get_work_item': 1, 'create_task': 1}" in done.stdout


def test_readme_example_under_dataflows_dev(tmp_path: Path, dev_env: dict[str, str]) -> None:
    """The same file served by ``dataflows dev``: the banner's curl starts a run that does not
    fail (it waits for the approval), and the approval event resumes it to completion."""
    (tmp_path / "app.py").write_text(readme_example())
    dev = Dev("app.py", tmp_path, dev_env, tmp_path / "dev.out")
    try:
        command = dev.curl()
        assert "azure_devops/workitem.created" in command and '"task-42"' in command
        run_id = started_run(run_curl(command))
        url = dev_env["DATAFLOWS_DATABASE_URL"]
        waiting = wait_for(lambda: status_of(url, run_id) in ("waiting", "failed"), 30, "the wait")
        assert waiting and status_of(url, run_id) == "waiting"
        approval = command.replace(
            command[command.index("-d ") :],
            "-d " + shlex.quote(json.dumps(APPROVAL)),
        )
        answer = run_curl(approval)
        assert answer["run_ids"] == [] and answer["resumed_run_ids"] == [run_id]
        run = finished(url, run_id)
        assert (run.status, run.result["approved"]) == ("completed", True)
    finally:
        dev.stop()
    assert "Traceback" not in (tmp_path / "dev.out").read_text()


APPROVAL = {"name": "approval/decided", "data": {"task_id": "task-42", "approved": True}}


def status_of(database_url: str, run_id: str) -> str:
    async def read() -> str:
        async with df.Dataflows(database_url) as app:
            return (await app.get_run(run_id)).status

    return asyncio.run(read())
