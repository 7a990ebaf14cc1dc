"""The pytest plugin as a user meets it: a project of its own, pytest-asyncio in strict mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = """
import pytest

import dataflows as df

app = df.Dataflows()


def send_email(to):
    raise RuntimeError("no mail server in tests")


@app.workflow("remind")
async def remind(event, step):
    await step.sleep("wait", "30d")
    return await step.run("send-email", send_email, event.data["to"])


@pytest.fixture
def dataflows_app():
    return app
"""

TESTS = """
import pytest


@pytest.mark.asyncio
async def test_reminder_is_sent_after_30_days(dataflows_env):
    mock = dataflows_env.mock_step("send-email", return_value="sent")
    run_id = await dataflows_env.start("remind", {"to": "ana@example.com"})
    await dataflows_env.assert_waiting(run_id, for_step="wait")
    await dataflows_env.advance("30d")
    await dataflows_env.assert_completed(run_id, "sent")
    assert mock.call_args == ("ana@example.com",)


@pytest.mark.asyncio
async def test_unmocked_email_fails(dataflows_env):
    run_id = await dataflows_env.start("remind", {"to": "bo@example.com"})
    await dataflows_env.wait(run_id)
    await dataflows_env.assert_completed(run_id)
"""

NO_APP = """
import pytest


@pytest.mark.asyncio
async def test_forgot_the_app(dataflows_env):
    pass
"""


def run_pytest(project: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``paths`` of ``project``, as a project of its own (in a temporary directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *paths],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_project_tests_its_workflows_with_the_fixture(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "app" / "test_remind.py").write_text(TESTS)
    (tmp_path / "no_app").mkdir()
    (tmp_path / "no_app" / "test_no_app.py").write_text(NO_APP)
    done = run_pytest(tmp_path, "app", "no_app")  # no ini file: strict mode
    output = done.stdout + done.stderr
    assert "1 failed, 1 passed, 1 error" in output, output
    # The failing assertion shows the run: its status, error and steps.
    assert "expected run" in output and "to be completed, but it is failed" in output
    assert "error: RuntimeError: no mail server in tests" in output
    assert "send-email               run    failed     attempts=4" in output
    # A project that gives no app is told how to give one.
    assert "define a `dataflows_app` fixture" in output


PG_TEST = """
import pytest


@pytest.mark.asyncio
async def test_on_postgres(dataflows_env):
    assert dataflows_env.app.database_url.startswith("postgresql://")
    assert dataflows_env.app.schema.startswith("dataflows_test_")
    run_id = await dataflows_env.start("remind", {"to": "ana@example.com"})
    dataflows_env.mock_step("send-email", return_value="sent")
    await dataflows_env.assert_completed((await dataflows_env.wait(run_id)).id, "sent")
"""


def test_the_database_url_option_runs_on_postgres(tmp_path: Path, pg_server_url: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "app" / "test_pg.py").write_text(PG_TEST)
    done = run_pytest(tmp_path, "app", f"--dataflows-database-url={pg_server_url}")
    assert "1 passed" in done.stdout, done.stdout + done.stderr
