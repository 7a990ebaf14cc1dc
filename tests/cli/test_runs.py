"""``dataflows runs list|show|cancel|retry`` on both stores."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

import dataflows as df
from dataflows.cli import cli
from dataflows.testing import replay
from tests.cli import sample_app
from tests.cli.conftest import Cli, Seeded, statuses


def test_list_json_has_every_run_newest_first(run_cli: Cli, seeded: Seeded) -> None:
    runs = json.loads(run_cli("runs", "list", "--json").stdout)["runs"]
    assert [r["id"] for r in runs] == [seeded.waiting, seeded.failed, seeded.completed]
    assert statuses(runs) == {
        seeded.completed: "completed",
        seeded.failed: "failed",
        seeded.waiting: "waiting",
    }
    for run in runs:
        assert datetime.fromisoformat(run["created_at"]).tzinfo is not None
    assert runs[0]["wait_reason"].startswith("event test/approve")


def test_list_filters(run_cli: Cli, seeded: Seeded) -> None:
    def ids(*args: str) -> list[str]:
        return [
            r["id"] for r in json.loads(run_cli("runs", "list", "--json", *args).stdout)["runs"]
        ]

    assert ids("--status", "failed") == [seeded.failed]
    assert ids("--workflow", "greet") == [seeded.completed]
    assert ids("--limit", "1") == [seeded.waiting]
    assert ids("--workflow", "nope") == []


def test_list_table(run_cli: Cli, seeded: Seeded) -> None:
    out = run_cli("runs", "list").stdout
    for expected in (seeded.completed, seeded.failed, seeded.waiting, "greet", "completed"):
        assert expected in out
    assert "NonRetriableError: kaput" in out
    assert "event test/approve" in out


def test_list_empty(run_cli: Cli) -> None:
    run_cli("migrate")  # creates the SQLite file, which `runs` refuses to do
    assert run_cli("runs", "list").stdout.strip() == "No runs."
    assert json.loads(run_cli("runs", "list", "--json").stdout) == {"runs": []}


def test_show_json_has_the_step_timeline(run_cli: Cli, seeded: Seeded) -> None:
    run = json.loads(run_cli("runs", "show", seeded.completed, "--json").stdout)
    assert run["status"] == "completed"
    assert run["result"] == {"greeting": "HELLO ADA"}
    assert isinstance(run["version"], str) and len(run["version"]) == 12
    assert run["event"]["data"] == {"name": "ada"}
    assert run["duration_seconds"] >= 0
    steps = run["steps"]
    assert [(s["key"], s["kind"], s["status"], s["attempts"]) for s in steps] == [
        ("hello", "run", "completed", 1),
        ("shout", "run", "completed", 1),
    ]
    assert steps[0]["output"] == "hello ada"
    assert 0 <= steps[0]["start_offset_seconds"] <= steps[1]["start_offset_seconds"]
    assert all(s["duration_seconds"] >= 0 for s in steps)
    assert datetime.fromisoformat(steps[1]["completed_at"]) <= datetime.fromisoformat(
        run["completed_at"]
    )


def test_show_table(run_cli: Cli, seeded: Seeded) -> None:
    out = run_cli("runs", "show", seeded.completed).stdout
    for expected in (seeded.completed, "greet", "completed", "hello", "shout", "Result", "Version"):
        assert expected in out
    assert "HELLO ADA" in out
    assert "+" in out and " ms" in out  # start offsets and durations


def test_show_failed_run_names_the_error(run_cli: Cli, seeded: Seeded) -> None:
    out = run_cli("runs", "show", seeded.failed).stdout
    assert "NonRetriableError: kaput" in out
    assert "in step boom" in out
    assert "Traceback" not in out
    assert "Traceback" in run_cli("runs", "show", seeded.failed, "--traceback").stdout
    error = json.loads(run_cli("runs", "show", seeded.failed, "--json").stdout)["error"]
    assert (error["type"], error["message"], error["step"]) == (
        "NonRetriableError",
        "kaput",
        "boom",
    )


def test_show_unknown_run_is_one_line(run_cli: Cli, seeded: Seeded) -> None:
    result = run_cli("runs", "show", "no-such-run", code=1)
    assert result.stderr.strip() == "Error: no run with id 'no-such-run'"


def test_cancel(run_cli: Cli, seeded: Seeded) -> None:
    assert "cancelled" in run_cli("runs", "cancel", seeded.waiting).stdout
    again = json.loads(run_cli("runs", "cancel", seeded.waiting, "--json").stdout)
    assert again == {"run_id": seeded.waiting, "status": "cancelled"}
    shown = json.loads(run_cli("runs", "show", seeded.waiting, "--json").stdout)
    assert shown["status"] == "cancelled"
    finished = run_cli("runs", "cancel", seeded.completed, code=1)
    assert "cannot cancel run" in finished.stderr and "completed" in finished.stderr
    assert "no run with id" in run_cli("runs", "cancel", "nope", code=1).stderr


def test_retry(run_cli: Cli, seeded: Seeded) -> None:
    out = json.loads(run_cli("runs", "retry", seeded.failed, "--json").stdout)
    assert out == {"run_id": seeded.failed, "status": "queued"}
    shown = json.loads(run_cli("runs", "show", seeded.failed, "--json").stdout)
    assert shown["status"] == "queued"
    assert [s["key"] for s in shown["steps"]] == []  # the failed step will run again
    refused = run_cli("runs", "retry", seeded.completed, code=1)
    assert "cannot retry run" in refused.stderr


def test_runs_accept_app_for_the_store(run_cli: Cli, seeded: Seeded) -> None:
    out = run_cli("runs", "show", seeded.completed, "tests.cli.sample_app", "--json").stdout
    assert json.loads(out)["id"] == seeded.completed


# -- errors that need no store ---------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.strip()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    code, err = invoke("runs", "list", "--database-url", f"sqlite:///{path}")
    assert code == 2 and err.startswith("Error: no database at")
    assert not path.exists()


def test_unsupported_database_url() -> None:
    code, err = invoke("runs", "list", "--database-url", "mysql://localhost/x")
    assert code == 2 and err.startswith("Error: invalid database URL 'mysql://localhost/x'")


def test_database_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, err = invoke("send", "x", "--database-url", f"sqlite:///{tmp_path}/file/db.sqlite")
    assert code == 2 and err.splitlines()[-1].startswith("Error: cannot open the database")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database " * 20)
    code, err = invoke("runs", "list", "--database-url", f"sqlite:///{tmp_path}/notes.db")
    assert code == 2
    assert err.startswith("Error: cannot use the database: SQLite at ")
    assert err.endswith("notes.db: file is not a database")


def test_export_writes_a_history_the_code_replays(
    run_cli: Cli, seeded: Seeded, tmp_path: Path
) -> None:
    path = tmp_path / "waiting.json"
    out = run_cli("runs", "export", seeded.waiting, "-o", str(path)).stdout
    assert f"Wrote the history of run {seeded.waiting}" in out
    history = json.loads(path.read_text())
    assert history["run"]["workflow_id"] == "wait"
    assert [(s["key"], s["status"]) for s in history["steps"]] == [("approval", "waiting")]
    assert json.loads(run_cli("runs", "export", seeded.waiting).stdout) == history

    app = sample_app.register(df.Dataflows("sqlite:///:memory:"))
    verdict = asyncio.run(replay(app, path))
    assert verdict.outcome == "compatible"
    run_cli("runs", "export", "nope", code=1)
