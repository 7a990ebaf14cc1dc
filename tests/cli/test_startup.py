"""``dataflows --help`` and ``--version`` load nothing heavy; a missing extra is named in one line.

Each test runs the command line in a fresh interpreter, as the ``dataflows`` script does, and reads
back which modules that process imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

import dataflows
from dataflows.cli import COMMANDS, load_command

HEAVY = ("psycopg", "psycopg_pool", "starlette", "uvicorn", "prometheus_client", "dataflows.app")

# Runs the CLI with argv, then prints the top-level modules it imported as JSON on the last line.
# ``blocked`` modules are set to None in sys.modules: importing one raises ModuleNotFoundError,
# exactly as when its extra is not installed.
_PROBE = """
import json, sys
blocked, argv = json.loads(sys.argv[1])
for name in blocked:
    sys.modules[name] = None
from dataflows.cli import cli
try:
    cli.main(argv, prog_name="dataflows")
except SystemExit as exc:
    code = exc.code
print()
print(json.dumps({"code": code, "modules": sorted(m for m, v in sys.modules.items() if v)}))
"""


def probe(*argv: str, blocked: tuple[str, ...] = ()) -> tuple[int, str, str, set[str]]:
    """Exit code, stdout, stderr and imported modules of ``dataflows ARGV`` in a new process."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([list(blocked), list(argv)])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    output, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    report = json.loads(last)
    return report["code"], output, proc.stderr, set(report["modules"])


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"], ["-V"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    code, output, _, modules = probe(*argv)
    assert code == 0
    assert output.strip()
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))
    assert not {m for m in modules if m.startswith("dataflows.cli.") and m != "dataflows.cli"}


def test_help_lists_every_subcommand() -> None:
    _, output, _, _ = probe("--help")
    commands = output.partition("Commands:")[2]
    listed = [line.split()[0] for line in commands.splitlines() if line[:3].strip()]
    assert listed == ["check", "dev", "migrate", "runs", "schedules", "send", "serve", "worker"]


def test_version_is_the_package_version() -> None:
    _, output, _, _ = probe("--version")
    assert output.strip() == f"dataflows, version {dataflows.__version__}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert COMMANDS[name][1] == command.get_short_help_str(limit=1000)


@pytest.mark.parametrize("command", ["serve", "dev"])
@pytest.mark.parametrize("blocked", [("starlette",), ("uvicorn",)])
def test_server_command_without_server_extra(command: str, blocked: tuple[str, ...]) -> None:
    code, output, stderr, _ = probe(command, "--help", blocked=blocked)
    assert code == 2
    assert stderr.strip() == (
        f"Error: dataflows {command} needs the HTTP server: pip install 'dataflows-engine[server]'"
    )
    assert "Usage" not in output


def test_postgres_url_without_postgres_extra() -> None:
    code, _, stderr, _ = probe(
        "migrate", "--database-url", "postgresql://127.0.0.1:1/none", blocked=("psycopg",)
    )
    assert code == 2
    assert stderr.strip() == (
        "Error: a postgresql:// database URL needs the PostgreSQL driver: "
        "pip install 'dataflows-engine[postgres]'"
    )


def test_store_commands_run_without_the_server_extra() -> None:
    code, _, stderr, modules = probe(
        "runs", "list", "--database-url", "sqlite:///:memory:", blocked=("starlette", "uvicorn")
    )
    assert code == 0, stderr
    assert "starlette" not in modules


def test_unrelated_import_errors_are_not_blamed_on_an_extra() -> None:
    from dataflows.errors import MissingExtra
    from dataflows.extras import needed_for

    with pytest.raises(ModuleNotFoundError) as caught, needed_for("something"):
        import dataflows_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(caught.value, MissingExtra)
