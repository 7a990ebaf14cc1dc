"""PostgreSQL for the test suite: find or start a server, make throwaway databases and schemas.

Only psycopg is used here, never dataflows code, so the fixtures work whatever state the engine
is in.

Server resolution (first that applies):
  1. DATAFLOWS_TEST_PG=embedded        -> always the throwaway server below (tests the fallback)
  2. DATAFLOWS_TEST_DATABASE_URL=url   -> that server; an error if unreachable (no silent fallback)
  3. postgresql://postgres@127.0.0.1:5432/test, if it answers within ~2 s
  4. a throwaway server from the binaries in the `pgserver` wheel, on 127.0.0.1:<free port>
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV_URL = "DATAFLOWS_TEST_DATABASE_URL"
ENV_MODE = "DATAFLOWS_TEST_PG"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class DbTarget:
    """Where a test's store lives: a URL plus, for PostgreSQL, the test's own schema."""

    url: str
    schema: str | None = None

    @property
    def kind(self) -> str:
        return "sqlite" if self.url.startswith("sqlite:") else "postgres"


@dataclass
class PgServer:
    url: str  # a maintenance database on the server (CREATE/DROP DATABASE run there)
    source: str  # for the pytest header
    version: str = ""
    _stop: Any = None

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def _server_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _answers(url: str) -> bool:
    try:
        # libpq's connect_timeout is whole seconds, minimum 2.
        with psycopg.connect(url, autocommit=True, connect_timeout=2):
            return True
    except (psycopg.Error, OSError):
        return False


def resolve_server() -> PgServer:
    mode = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if mode not in ("auto", "embedded"):
        raise ValueError(f"{ENV_MODE} must be 'auto' or 'embedded', not {mode!r}")
    if mode == "auto":
        url = os.environ.get(ENV_URL)
        if url:
            return PgServer(url, f"${ENV_URL}", _server_version(url))
        if _answers(LOCAL_URL):
            return PgServer(LOCAL_URL, "local 127.0.0.1:5432", _server_version(LOCAL_URL))
    server = start_embedded()
    server.version = _server_version(server.url)
    return server


# --- throwaway server from the pgserver wheel ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_embedded() -> PgServer:
    """initdb + pg_ctl start with the wheel's own binaries, listening on 127.0.0.1 (TCP, so child
    processes and proxies reach it like a normal server). pgserver.get_server() itself only
    listens on a Unix socket, hence the direct use of its binaries."""
    spec = find_spec("pgserver")  # not imported: its import has side effects (lock files, warnings)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no PostgreSQL reachable and no pgserver wheel: run scripts/bootstrap")
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    base = Path(tempfile.mkdtemp(prefix="dataflows-pg-"))
    try:
        return _launch(bindir, base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


_INITDB_ARGS = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]


def _launch(bindir: Path, base: Path) -> PgServer:
    data = base / "data"
    data.mkdir()
    run: dict[str, Any] = {"cwd": base, "env": {**os.environ, "LC_ALL": "C"}}
    if os.geteuid() == 0:
        # postgres refuses to run as root: run every binary as `nobody`, which owns the data dir.
        nobody = pwd.getpwnam("nobody")
        run.update(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
        base.chmod(0o755)
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        if not _runs(bindir / "postgres", run):
            # The venv is somewhere `nobody` cannot read (e.g. under /root): use a copy (~35 MB)
            # laid out as in site-packages, since the binaries' RPATH finds ../../../pgserver.libs.
            site = bindir.parents[2]
            for part in ("pgserver/pginstall", "pgserver.libs"):
                if (site / part).exists():
                    shutil.copytree(site / part, base / "site" / part, symlinks=True)
            bindir = base / "site" / "pgserver" / "pginstall" / "bin"

    def ctl(*args: str | Path) -> None:
        # Output goes to a file, not a pipe: the postmaster would inherit a pipe and hang us.
        with open(base / "ctl.out", "a") as out:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=90, **run)
        if done.returncode != 0:
            log = (base / "ctl.out").read_text() + _read(data / "server.log")
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}):\n{log}")

    port = _free_port()
    ctl(bindir / "initdb", "-D", data, *_INITDB_ARGS)
    # fsync off: the data dir is thrown away; crash tests kill postgres, not the OS.
    # The log lives in the data dir, the one place the server's user may write.
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c full_page_writes=off"
    ctl(bindir / "pg_ctl", "-D", data, "-l", data / "server.log", "-o", opts, "-w", "start")

    def stop() -> None:
        try:
            ctl(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)

    server = PgServer(
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        f"embedded pgserver binaries, 127.0.0.1:{port}, {base}",
        _stop=stop,
    )
    atexit.register(server.stop)  # backstop if pytest exits without unconfigure
    return server


def _runs(exe: Path, run: dict[str, Any]) -> bool:
    try:
        return subprocess.run([exe, "--version"], capture_output=True, **run).returncode == 0
    except OSError:
        return False


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# --- per-session databases and per-test schemas ---------------------------------------------


def create_database(server_url: str) -> str:
    name = f"dataflows_test_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, db_url: str) -> None:
    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        # FORCE: leftover worker connections must not keep the database alive.
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


def create_schema(db_url: str) -> str:
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name


def drop_schema(db_url: str, schema: str) -> None:
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '3s'")
        try:
            conn.execute(drop)
        except psycopg.errors.LockNotAvailable:
            # A test leaked a session holding locks in its schema (a stuck or killed worker):
            # each session has its own database, so every other backend here is a leftover.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            conn.execute(drop)
