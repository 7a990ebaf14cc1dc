"""The SQLite store: the embedded default, for one machine (several processes may share the file).

One connection per store, used from one dedicated thread so the event loop never blocks on the
file lock. Every program runs in a ``BEGIN IMMEDIATE`` transaction, which serialises writers across
processes; WAL lets readers go on meanwhile.

While a listener (a worker) is registered, the store watches the file for commits made by other
connections (other processes, other stores on the same file) with ``PRAGMA data_version`` every
:data:`WATCH_INTERVAL` seconds, and wakes its listeners when one happened: work written elsewhere
is picked up within milliseconds instead of at the next poll. Its own commits wake nobody twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dataflows.errors import InvalidDatabaseURL, StoreError, StoreUnavailable
from dataflows.store import leases
from dataflows.store.base import Listener
from dataflows.store.events import SqliteIntake
from dataflows.store.keys import canonical_json
from dataflows.store.program import NOTIFY, Program, Query
from dataflows.store.queries import load_migrations, load_queries
from dataflows.store.sql_store import SqlStore

DEFAULT_PATH = ".dataflows/dataflows.db"
#: Seconds between looks for commits by other connections while a worker listens.
WATCH_INTERVAL = 0.01


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``.

    Three slashes, then the path: ``sqlite://file.db`` or ``sqlite:file.db`` would otherwise lose
    the path's first character or name a host, so they raise :class:`InvalidDatabaseURL` showing
    the form to write. A bare path (no ``sqlite:``) is returned as it is.
    """
    if not url.startswith("sqlite:"):
        return url
    parsed = urlsplit(url)
    path = unquote(parsed.path)[1:]
    if not url.startswith("sqlite:///") or not path or parsed.query or parsed.fragment:
        raise InvalidDatabaseURL(url, _sqlite_hint(url))
    return path


def _sqlite_hint(url: str) -> str:
    name = url.removeprefix("sqlite:").lstrip("/").partition("?")[0] or "path/to/file.db"
    return (
        f"write sqlite:///{name} (three slashes, then a path relative to the current "
        "directory), sqlite:////absolute/path.db, or sqlite:///:memory:"
    )


class SQLiteStore(SqlStore):
    dialect = "sqlite"
    intake = SqliteIntake()

    def __init__(self, path: str = DEFAULT_PATH, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = path
        self.busy_timeout = busy_timeout
        # A block may hold several statements, each ending a line with ";": run in order.
        self._statements = {
            name: [part.strip() for part in text.split(";\n") if part.strip()]
            for name, text in load_queries("sqlite").items()
        }
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataflows-sqlite")
        self._conn: sqlite3.Connection | None = None
        #: Liveness: the open, locked file of each worker of this process.
        self._lock_files: dict[str, int] = {}
        #: While listeners are registered: a connection that looks for commits to the file every
        #: WATCH_INTERVAL, the next look, the last value it saw, the last value the store's own
        #: connection saw, and the check of that value under way (with another one asked for).
        self._watch_conn: sqlite3.Connection | None = None
        self._watch_handle: asyncio.TimerHandle | None = None
        self._watch_version: int | None = None
        self._own_version: int | None = None
        self._checking: asyncio.Task[None] | None = None
        self._recheck = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        await self._call(self._connect)
        if migrate:
            await self.migrate()

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row  # rows read by column name
        # A wait's key, made in SQL as intake makes an event's (see store/keys.py).
        conn.create_function("canonical_json", 1, canonical_json, deterministic=True)
        _set_wal(conn, self.busy_timeout)
        # FULL: a transaction that returned is on disk, even across a power cut (guarantee 4).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        self._conn = conn

    async def close(self) -> None:
        await asyncio.gather(*self._stop_watching(), return_exceptions=True)
        for worker_id in list(self._lock_files):
            _unlock(self._lock_files.pop(worker_id), self._lock_file(worker_id))
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)

    # -- wake-ups from other processes -------------------------------------------------------------

    def add_listener(self, listener: Listener, *, worker_id: str | None = None) -> None:
        super().add_listener(listener, worker_id=worker_id)
        # Only a worker's listener needs work written elsewhere (it is added in its loop).
        if worker_id is not None and self._watch_conn is None and self.path != ":memory:":
            self._watch_conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            self._watch_version = None
            self._own_version = None
            self._check_own()  # the own connection's starting value
            self._watch_handle = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._tick)

    def remove_listener(self, listener: Listener) -> None:
        super().remove_listener(listener)
        if all(worker_id is None for worker_id in self._listeners.values()):
            self._stop_watching()

    def _stop_watching(self) -> list[asyncio.Task[None]]:
        if self._watch_handle is not None:
            self._watch_handle.cancel()
            self._watch_handle = None
        if self._watch_conn is not None:
            self._watch_conn.close()
            self._watch_conn = None
        checking, self._checking = self._checking, None
        if checking is None:
            return []
        checking.cancel()
        return [checking]

    def _tick(self) -> None:
        """Look whether any connection committed to the file since the last look.

        ``PRAGMA data_version`` on a connection changes exactly when another connection committed
        since it was last asked. The look runs on the event loop on a connection of its own (a
        few microseconds; it never waits for a lock, a busy file only skips a look), so it also
        sees this store's commits: a change is checked on the store's connection, which counts
        only the others'.
        """
        if self._watch_conn is None:
            return
        try:
            version = self._watch_conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            pass  # busy or locked: look again next time
        else:
            if self._watch_version is not None and version != self._watch_version:
                self._check_own()
            self._watch_version = version
        self._watch_handle = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._tick)

    def _check_own(self) -> None:
        if self._checking is not None:
            self._recheck = True
        else:
            self._checking = asyncio.get_running_loop().create_task(
                self._check_others(), name="dataflows-sqlite-watch"
            )

    async def _check_others(self) -> None:
        """Wake the listeners if another connection committed (not only this store)."""
        try:
            self._recheck = True
            while self._recheck:
                self._recheck = False
                try:
                    version = await self._call(self._data_version)
                except (StoreError, sqlite3.Error):
                    continue  # busy, locked or closing: the next change or poll will do
                if self._own_version is not None and version != self._own_version:
                    self.notify_listeners()
                self._own_version = version
        finally:
            if self._checking is asyncio.current_task():
                self._checking = None

    def _data_version(self) -> int:
        row = self._connection().execute("PRAGMA data_version").fetchone()
        return int(row[0])

    async def migrate(self) -> list[str]:
        applied: list[str] = await self._call(self._migrate)
        return applied

    def _migrate(self) -> list[str]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM migrations")}
            applied = []
            for version, name, sql in load_migrations("sqlite"):
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                applied.append(f"{version:04d}_{name}")
            conn.execute("COMMIT")
            return applied
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def ping(self) -> None:
        await self._call(lambda: self._connection().execute("SELECT 1").fetchone())

    async def database_time(self) -> float:
        return time.time()

    # -- liveness ----------------------------------------------------------------------------------

    async def register_worker(self, worker_id: str, now: float) -> None:
        """Lock the worker's file (``<database>-workers/<worker id>``), then record it."""
        if self.path == ":memory:" or worker_id in self._lock_files:
            return  # one process only: nobody to fail over to
        path = self._lock_file(worker_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_files[worker_id] = fd
        await self._run(leases.register_worker(worker_id, now))

    async def unregister_worker(self, worker_id: str) -> None:
        fd = self._lock_files.pop(worker_id, None)
        if fd is not None:
            await self._run(leases.unregister_worker(worker_id))
            _unlock(fd, self._lock_file(worker_id))

    async def reap_workers(self, now: float) -> list[str]:
        """Every recorded worker of another process whose file can be locked is dead."""
        if self.path == ":memory:":
            return []
        taken: list[str] = []
        for worker_id, _ in await self.list_workers():
            if worker_id in self._lock_files:
                continue
            path = self._lock_file(worker_id)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # alive
                continue
            try:
                taken += await self._run(leases.reap_worker(worker_id))
            finally:
                _unlock(fd, path)
        if taken:
            self.notify_listeners()
        return taken

    async def list_workers(self) -> list[tuple[str, float]]:
        workers: list[tuple[str, float]] = await self._run_single(leases.list_workers())
        return workers

    def _lock_file(self, worker_id: str) -> Path:
        return Path(f"{self.path}-workers") / re.sub(r"[^\w.:-]", "_", worker_id)

    # -- running programs --------------------------------------------------------------------------

    async def _run(self, program: Program) -> Any:
        result, notify = await self._call(self._execute, program)
        if notify:
            self.notify_listeners()
        return result

    def _execute(self, program: Program) -> tuple[Any, bool]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        notify = False
        try:
            query = next(program)
            while True:
                if query is NOTIFY:  # other processes poll; listeners here are called on commit
                    notify = True
                    query = program.send(None)
                else:
                    query = program.send(self._fetch(conn, query))
        except StopIteration as stop:
            conn.execute("COMMIT")
            return stop.value, notify
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _fetch(self, conn: sqlite3.Connection, query: Query) -> Any:
        for statement in self._statements[query.name]:
            cursor = conn.execute(statement, query.params)
        if query.fetch == "all":
            return cursor.fetchall()
        if query.fetch == "one":
            return cursor.fetchone()
        if query.fetch == "rowcount":
            return cursor.rowcount
        return None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        return self._conn

    async def _call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except sqlite3.OperationalError as exc:
            # Locked past the busy timeout, disk I/O errors, a vanished file: all transient.
            raise StoreUnavailable(f"SQLite at {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise  # a bug in a query, not a problem with the database
            # "file is not a database", corruption: retrying will not help.
            raise StoreError(f"SQLite at {self.path}: {exc}") from exc


def _unlock(fd: int, path: Path) -> None:
    """Remove a worker's lock file, then close it (which releases the lock)."""
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)


def _statements(sql: str) -> list[str]:
    """Split a migration file on semicolons that end a line (the files keep to that)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().strip(";")]


def _set_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the database in WAL mode. SQLite answers "database is locked" at once, without its
    busy handler, when another connection holds the file while the mode is being changed (as
    when several processes open a new file together): ask again until ``busy_timeout``."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
