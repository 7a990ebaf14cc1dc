"""``dataflows runs cancel`` by filters (bulk), beside ``runs cancel RUN_ID``."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import Cli, Seeded


def test_bulk_cancel_by_workflow_and_status(run_cli: Cli, seeded: Seeded) -> None:
    out = json.loads(run_cli("runs", "cancel", "--status", "queued", "--json").stdout)
    assert out == {"cancelled": 0}
    out = json.loads(
        run_cli(
            "runs", "cancel", "--status", "waiting", "--status", "queued", "--since", "1h", "--json"
        ).stdout
    )
    assert out == {"cancelled": 1}
    shown = json.loads(run_cli("runs", "show", seeded.waiting, "--json").stdout)
    assert shown["status"] == "cancelled"
    completed = json.loads(run_cli("runs", "show", seeded.completed, "--json").stdout)
    assert completed["status"] == "completed"  # finished runs are never touched


def test_bulk_cancel_by_time_and_with_the_app_argument(run_cli: Cli, seeded: Seeded) -> None:
    none = run_cli("runs", "cancel", "--before", "2000-01-01T00:00:00", "--json").stdout
    assert json.loads(none) == {"cancelled": 0}
    text = run_cli(
        "runs", "cancel", "tests.cli.sample_app", "--workflow", "wait", "--before", "2999-01-01"
    ).stdout
    assert "Cancelled 1 run." in text, text
    shown = json.loads(run_cli("runs", "show", seeded.waiting, "--json").stdout)
    assert shown["status"] == "cancelled"


def test_bulk_cancel_usage_errors(run_cli: Cli, seeded: Seeded) -> None:
    assert "give a RUN_ID, or filters" in run_cli("runs", "cancel", code=2).stderr
    both = run_cli(
        "runs", "cancel", seeded.waiting, "tests.cli.sample_app", "--status", "queued", code=2
    )
    assert "not both" in both.stderr
    bad = run_cli("runs", "cancel", "--since", "last tuesday", code=2)
    assert "neither an ISO 8601 time nor a duration" in bad.stderr
    refused = run_cli("runs", "cancel", "--status", "failed", code=2)
    assert "'failed' is not one of" in refused.stderr
    shown = json.loads(run_cli("runs", "show", seeded.waiting, "--json").stdout)
    assert shown["status"] == "waiting"


def test_with_filters_the_argument_is_the_app_even_when_the_environment_names_one(
    run_cli: Cli, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFLOWS_APP", "tests.cli.no_such_module")
    out = run_cli("runs", "cancel", "tests.cli.sample_app", "--workflow", "wait", "--json").stdout
    assert json.loads(out) == {"cancelled": 1}
