"""``dataflows send`` on both stores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.cli.conftest import SAMPLE_APP, Cli, Seeded, client, wait_for_status
from tests.pg import DbTarget


def test_send_with_app_starts_its_runs(run_cli: Cli) -> None:
    result = run_cli("send", "test/greet", SAMPLE_APP, "--data", '{"name": "bo"}', "--json")
    sent = json.loads(result.stdout)
    assert sent["duplicate"] is False and len(sent["run_ids"]) == 1
    run = json.loads(run_cli("runs", "show", sent["run_ids"][0], "--json").stdout)
    assert (run["workflow_id"], run["status"]) == ("greet", "queued")
    assert run["event"] == {
        "id": sent["event_id"],
        "name": "test/greet",
        "ts": run["event"]["ts"],
        "data": {"name": "bo"},
    }


def test_send_text_output(run_cli: Cli) -> None:
    out = run_cli("send", "test/greet", SAMPLE_APP, "--id", "evt-1").stdout
    assert "Event evt-1 (test/greet) stored." in out
    assert "Started 1 run:" in out
    untriggered = run_cli("send", "nobody/listens", SAMPLE_APP).stdout
    assert "No workflow is triggered by it." in untriggered


def test_send_deduplicates_on_id(run_cli: Cli) -> None:
    first = json.loads(run_cli("send", "test/greet", SAMPLE_APP, "--id", "e1", "--json").stdout)
    again = json.loads(run_cli("send", "test/greet", SAMPLE_APP, "--id", "e1", "--json").stdout)
    assert again == {**first, "duplicate": True}
    assert "already stored" in run_cli("send", "test/greet", SAMPLE_APP, "--id", "e1").stdout


def test_send_without_app_stores_the_event_and_resumes_waits(
    run_cli: Cli, seeded: Seeded, db: DbTarget
) -> None:
    result = run_cli("send", "test/greet")
    assert "starts no workflow" in result.stderr
    quiet = json.loads(run_cli("send", "test/approve", "--json").stdout)
    assert quiet["run_ids"] == [] and quiet["resumed_run_ids"] == [seeded.waiting]
    again = run_cli("send", "test/approve").stdout  # nothing is left waiting for another one
    assert "Resumed" not in again

    async def resumed() -> None:
        app = client(db)
        async with app, app.worker(poll_interval=0.05):
            await wait_for_status(app, seeded.waiting, "completed")
            assert (await app.get_run(seeded.waiting)).result is True

    asyncio.run(resumed())


def test_data_from_a_file_and_stdin(run_cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{"name": "file"}')
    from_file = json.loads(run_cli("send", "x/y", "--data", f"@{path}", "--json").stdout)
    from_stdin = json.loads(
        run_cli("send", "x/y", "--data", "-", "--json", input='{"name": "stdin"}').stdout
    )
    assert from_file["event_id"] != from_stdin["event_id"]


def test_bad_data_is_a_usage_error(run_cli: Cli, tmp_path: Path) -> None:
    for data, message in [
        ("{bad", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        (f"@{tmp_path / 'missing.json'}", "cannot read"),
    ]:
        result = run_cli("send", "x/y", "--data", data, code=2)
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_invalid_event_name_is_one_line(run_cli: Cli) -> None:
    result = run_cli("send", "bad\nname", code=1)
    assert result.stderr.strip().splitlines()[-1].startswith("Error: invalid event name")
