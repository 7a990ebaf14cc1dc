"""Errors a newcomer meets first, each one line (or the user's own traceback) and exit code 2.

Every case runs the real ``dataflows`` command in a fresh process. The PostgreSQL cases use a
private server of their own, which requires a password (scram-sha-256) from one role.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from dataflows.errors import InvalidDatabaseURL
from dataflows.store import database_url
from tests.pg import PgServer, start_embedded

APP = "import dataflows as df\n\napp = df.Dataflows()\n"
PASSWORD = "Corr3ct-Horse"
WRONG_PASSWORD = "n0t-the-Password"


@dataclass
class Done:
    code: int
    out: str
    err: str
    seconds: float


def run_all(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list[Done]:
    """``dataflows ARGS`` for each of ``commands``, all at once in ``cwd``."""
    return start_all([(args, cwd, env or {}) for args in commands])


def start_all(jobs: list[tuple[list[str], Path, dict[str, str]]]) -> list[Done]:
    """Run each ``(args, folder, env)`` job at once; each result with how long it took."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATAFLOWS_", "PG"))}
    started = []
    for number, (args, cwd, env) in enumerate(jobs):
        out, err = cwd / f"{number}.out", cwd / f"{number}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [sys.executable, "-m", "dataflows.cli", *args],
                cwd=cwd,
                env={**base, **env},
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
        started.append((popen, time.monotonic(), out, err))
    results = []
    for popen, began, out, err in started:
        try:
            code = popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still serving: the check that should stop it did not
            popen.kill()
            popen.wait()
            code = -9
        seconds = time.monotonic() - began
        results.append(Done(code, out.read_text(), err.read_text(), seconds))
    return results


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Done:
    return run_all([args], cwd, env)[0]


def last_line(done: Done) -> str:
    return done.err.strip().splitlines()[-1]


# -- SQLite URLs ----------------------------------------------------------------------------------


def test_sqlite_url_forms(tmp_path: Path) -> None:
    absolute = tmp_path / "abs" / "absolute.db"
    forms = ["sqlite:///relative.db", f"sqlite:///{absolute}", "sqlite:///:memory:"]
    results = run_all([["migrate", "--database-url", url] for url in forms], tmp_path)
    assert [r.code for r in results] == [0, 0, 0], results
    assert (tmp_path / "relative.db").is_file()
    assert absolute.is_file()
    assert str(absolute).startswith("/") and f"sqlite:///{absolute}".startswith("sqlite:////")
    assert "sqlite:///:memory:" in results[2].out


@pytest.mark.parametrize("url", ["sqlite://foo.db", "sqlite:foo.db"])
def test_a_sqlite_url_without_three_slashes_is_refused(tmp_path: Path, url: str) -> None:
    results = run_all(
        [["migrate", "--database-url", url], ["runs", "list", "--database-url", url]], tmp_path
    )
    for done in results:
        assert done.code == 2, done
        assert done.err.strip() == (
            f"Error: invalid database URL {url!r}: write sqlite:///foo.db (three slashes, then a "
            "path relative to the current directory), sqlite:////absolute/path.db, or "
            "sqlite:///:memory:"
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == []


def test_an_unknown_scheme_is_refused_without_its_password(tmp_path: Path) -> None:
    done = run(["runs", "list", "--database-url", "mysql://me:s3cret@localhost/x"], tmp_path)
    assert done.code == 2
    assert done.err.strip() == (
        "Error: invalid database URL 'mysql://me:***@localhost/x': use "
        "postgresql://user:password@host:port/database or sqlite:///path/to/file.db"
    )
    assert "s3cret" not in done.out + done.err


def test_database_url_validates_before_anything_opens(tmp_path: Path) -> None:
    assert database_url("sqlite:///a.db") == "sqlite:///a.db"
    assert database_url("postgresql://h/db") == "postgresql://h/db"
    for bad in ("sqlite://a.db", "sqlite:a.db", "sqlite:///", "sqlite:///a.db?mode=ro", "x://y"):
        with pytest.raises(InvalidDatabaseURL) as caught:
            database_url(bad)
        assert caught.value.code == "invalid_database_url"


# -- PostgreSQL: missing database, wrong password, server down --------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[PgServer]:
    """A private server where role ``alice`` must give her password (scram-sha-256)."""
    server = start_embedded()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}'")
            conn.execute("CREATE DATABASE alice OWNER alice")
            row = conn.execute("SELECT current_setting('hba_file')").fetchone()
            assert row is not None
            hba = Path(row[0])
            hba.write_text("host all alice 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


COMMANDS = {
    "migrate": ["migrate"],
    "runs": ["runs", "list"],
    "send": ["send", "test/x", "flows.py"],
    "serve": ["serve", "flows.py", "--port", "0"],
    "worker": ["worker", "flows.py"],
    "dev": ["dev", "flows.py", "--port", "0"],
}


def test_the_password_server_accepts_the_right_password(password_server: PgServer) -> None:
    port = password_server.url.rsplit(":", 1)[1].split("/")[0]
    with psycopg.connect(f"postgresql://alice:{PASSWORD}@127.0.0.1:{port}/alice") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://alice:{WRONG_PASSWORD}@127.0.0.1:{port}/alice")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_postgres_failure_has_its_own_line(
    tmp_path: Path, password_server: PgServer, command: str
) -> None:
    (tmp_path / "flows.py").write_text(APP)
    port = password_server.url.rsplit(":", 1)[1].split("/")[0]
    down = _closed_port()
    cases = {
        f"postgresql://postgres@127.0.0.1:{port}/nope": (
            f'Error: PostgreSQL database "nope" does not exist on 127.0.0.1:{port} '
            "(create it: createdb nope)"
        ),
        f"postgresql://alice:{WRONG_PASSWORD}@127.0.0.1:{port}/alice": (
            f'Error: PostgreSQL rejected the password for user "alice" on 127.0.0.1:{port}'
        ),
        f"postgresql://postgres@127.0.0.1:{down}/test": (
            f"Error: cannot reach PostgreSQL at 127.0.0.1:{down} (connection refused) — "
            "is the server running?"
        ),
    }
    jobs = [(COMMANDS[command], tmp_path, {"DATAFLOWS_DATABASE_URL": url}) for url in cases]
    # One at a time: each is timed from its own start, without two others competing for the
    # machine's cores (the time is the command's, interpreter start-up included).
    outcomes = [start_all([job])[0] for job in jobs]
    for (url, expected), outcome in zip(cases.items(), outcomes, strict=True):
        assert outcome.code == 2, (url, outcome)
        assert last_line(outcome) == expected, outcome
        assert outcome.seconds < 2.0, (url, outcome.seconds)
        assert "Traceback" not in outcome.err
        assert WRONG_PASSWORD not in outcome.out + outcome.err


# -- an APP whose own code fails to import --------------------------------------------------------

BROKEN = {
    "syntax": ("app = (\n", "SyntaxError: '(' was never closed"),
    "import": (
        "import not_installed_dependency_xyz\n",
        "ModuleNotFoundError: No module named 'not_installed_dependency_xyz'",
    ),
    "raises": ("import helper_mod\n", "RuntimeError: boom at import"),
}
MACHINERY = ("importlib", "<frozen", "/click/", "/dataflows/", "site-packages/dataflows")


@pytest.mark.parametrize("form", ["file", "module"])
def test_an_app_that_does_not_import_shows_only_its_own_frames(tmp_path: Path, form: str) -> None:
    (tmp_path / "helper_mod.py").write_text(
        "def fail() -> None:\n    raise RuntimeError('boom at import')\n\n\nfail()\n"
    )
    jobs: list[tuple[list[str], Path, dict[str, str]]] = []
    for name, (body, _) in BROKEN.items():
        (tmp_path / f"broken_{name}.py").write_text(f"import dataflows as df\n{body}")
        spec = f"broken_{name}.py" if form == "file" else f"broken_{name}:app"
        jobs.append((["worker", spec], tmp_path, {}))
    for (name, (_, error)), done in zip(BROKEN.items(), start_all(jobs), strict=True):
        assert done.code == 2, (name, done)
        lines = done.err.strip().splitlines()
        spec = f"broken_{name}.py" if form == "file" else f"broken_{name}:app"
        assert lines[-1] == (
            f"Error: cannot load APP {spec!r}: its code raised {error.split(':')[0]} while it "
            "was imported (traceback above)"
        )
        assert error in lines, done.err
        assert f'{tmp_path}/broken_{name}.py", line 2' in done.err
        assert not [line for line in lines if any(m in line for m in MACHINERY)], done.err
    raised = start_all([jobs[2]])[0].err
    assert 'helper_mod.py", line 5, in <module>' in raised
    assert 'helper_mod.py", line 2, in fail' in raised


# -- send: --data that is not storable JSON -------------------------------------------------------


def test_send_refuses_nan_and_infinities(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    literals = ["NaN", "Infinity", "-Infinity"]
    jobs: list[tuple[list[str], Path, dict[str, str]]] = [
        (["send", "x/y", "--data", f'{{"a": {literal}}}', "--database-url", url], tmp_path, {})
        for literal in literals
    ]
    for literal, done in zip(literals, start_all(jobs), strict=True):
        assert done.code == 2, done
        assert last_line(done) == (
            f"Error: Invalid value for '--data': not storable JSON: {literal} is not a JSON number"
        )
    assert not (tmp_path / "events.db").exists()
