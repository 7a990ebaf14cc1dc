"""The PostgreSQL store: many workers on many machines share one database.

Every program runs in one transaction on one pooled connection. All tables live in the store's
schema, reached through each connection's ``search_path``, so the SQL files stay unqualified.
Wake-ups travel by ``NOTIFY`` on a channel per schema; they are a latency hint only (workers
also poll), so the listener reconnects quietly for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool

from dataflows.errors import (
    DatabaseUnreachable,
    InvalidDatabaseURL,
    StoreError,
    StoreUnavailable,
)
from dataflows.records import ClaimedRun, NewRun, SentEvents
from dataflows.store import leases, runs
from dataflows.store.events import (
    PostgresIntake,
    Sending,
    batch_claim,
    intake_payload,
    intake_results,
    share_claimed,
)
from dataflows.store.pg_connect import address, connect_error, scrub
from dataflows.store.pg_steps import Statement, StepWriter
from dataflows.store.program import NOTIFY, Program, Query
from dataflows.store.queries import load_migrations, load_queries
from dataflows.store.rows import claimed_runs
from dataflows.store.sql_store import SqlStore
from dataflows.store.steps import record_steps_counts, record_steps_query
from dataflows.store.urls import redact_password
from dataflows.versions import sha256

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: Driver errors that mean "not now": connection lost or refused, pool exhausted, the server
#: shutting down, lock or deadlock aborts. All are worth retrying, so all become StoreUnavailable.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
#: Applied unless the URL says otherwise: give up connecting quickly, and notice a dead peer on
#: an idle or busy socket within about half a minute instead of the kernel's 15+ minutes.
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "dataflows",
}
_LISTEN_CHECK_SECONDS = 30.0
#: After a connection failed: how often, and how patiently, a fresh connection is tried.
_RECOVERY_POLL_SECONDS = 0.1
_RECOVERY_CONNECT_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 10.0
#: Liveness: how long a worker's lock must stay free before its runs are taken over (time for a
#: live worker whose connection broke, say in a database restart, to lock again: it reconnects
#: the moment the server ends its session, see ``_liveness_stirred``), and how long a liveness
#: round trip may take before its connection is given up (a frozen server).
_LIVENESS_GRACE_SECONDS = 0.2
_LIVENESS_TIMEOUT_SECONDS = 2.0
#: While a worker's lock is lost and the server does not answer yet (restarting), how often the
#: store tries again to lock it: well within the grace, once the server is back.
_RELOCK_RETRY_SECONDS = 0.05
#: The liveness connection asks the server to notice a vanished client host (no reset) within
#: about eight seconds and end the session, which releases the worker's lock.
_LIVENESS_OPTIONS = (
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
    " -c tcp_user_timeout=8000"
)


class PostgresStore(SqlStore):
    dialect = "postgres"
    claims_at_intake = True
    assigns_remotely = True
    intake = PostgresIntake()

    def __init__(
        self,
        url: str,
        *,
        schema: str = "dataflows",
        min_size: int = 4,
        max_size: int = 10,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
    ) -> None:
        """``timeout`` bounds the wait for a pooled connection; past it, StoreUnavailable.

        ``connect_timeout`` bounds the first connection :meth:`open` makes (else the URL's
        ``connect_timeout``, else 5 s): a command checking its database at start wants an answer
        sooner than a worker waiting out a slow network.
        """
        super().__init__()
        if not _SCHEMA.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}: use letters, digits and _")
        self.url = url
        self.schema = schema
        self.channel = _channel(schema)
        self.min_size = min(min_size, max_size)
        self.max_size = max_size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._queries = load_queries("postgres")
        self._sender = os.urandom(8).hex()  # marks our own notifications
        self._commit_notify = sql.SQL(self._queries["notify_work"]).format(
            channel=sql.Literal(self.channel), sender=sql.Literal(self._sender)
        )
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._step_writer: StepWriter | None = None
        self._step_statements = {
            name: Statement(name, self._queries[name]) for name in ("record_step", "record_steps")
        }
        self._start_writer: StepWriter | None = None
        self._start_statements = {
            "start_runs": Statement("start_runs", self._queries["start_runs"])
        }
        # Connections of their own for event intake and for claims (see _own_connection).
        self._own: dict[str, Connection] = {}
        self._own_busy: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # Liveness: the workers of this process, each holding an advisory lock (the store's
        # class, a key from a sequence) on one connection of their own.
        self._lock_class = worker_lock_class(schema)
        self._liveness: Connection | None = None
        self._alive: set[str] = set()
        self._locked: set[str] = set()  # of those, the ones locked on the current connection
        self._liveness_mutex = asyncio.Lock()
        self._watched: int | None = None  # the liveness socket, watched between round trips
        self._relock: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        """Connect once on our own, then fill the pool.

        The first connection says why it failed: a database that does not exist, credentials the
        server rejects and an unknown host raise :class:`DatabaseRejected` errors, a server that
        does not answer :class:`DatabaseUnreachable` — at once, where the pool would keep
        retrying until its timeout. Migrations run on that same connection.
        """
        if self._pool is not None:
            return
        async with await self._first_connection() as conn:
            if migrate:
                async with self._translate("migrating"):
                    await self._migrate_on(conn)
        pool = self._new_pool()
        try:
            async with self._translate("connecting"):
                await pool.open(wait=True, timeout=self.timeout)
        except BaseException:
            await pool.close()  # so that open() can simply be called again
            raise
        self._pool = pool
        self._listener = asyncio.create_task(self._listen_forever(), name="dataflows-listen")

    async def close(self) -> None:
        self._alive.clear()
        if self._relock is not None:
            self._relock.cancel()
            await asyncio.gather(self._relock, return_exceptions=True)
            self._relock = None
        await self._drop_liveness()
        writers = (self._step_writer, self._start_writer)
        self._step_writer = self._start_writer = None
        for writer in writers:
            if writer is not None:
                await writer.close()
        own, self._own = self._own, {}
        for conn in own.values():
            with contextlib.suppress(Exception):
                await conn.close()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
            self._recovery = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._sweeper is not None:
            # Let a pool check in progress hand back (and so close) the connections it holds.
            await asyncio.wait([self._sweeper], timeout=5)
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def migrate(self) -> list[str]:
        """Apply pending migrations under a session advisory lock, each in its own transaction."""
        async with self._translate("migrating"):
            conn = await Connection.connect(self.url, **self._connect_kwargs())
            async with conn:
                return await self._migrate_on(conn)

    async def _migrate_on(self, conn: Connection) -> list[str]:
        lock_key = f"dataflows-migrate/{self.schema}"
        await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [lock_key])
        try:
            return await self._apply_migrations(conn)
        finally:
            if not conn.broken:  # a lost session has released its locks already
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [lock_key])

    async def _apply_migrations(self, conn: Connection) -> list[str]:
        schema = sql.Identifier(self.schema)
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at double precision NOT NULL)"
            ).format(schema)
        )
        cursor = await conn.execute("SELECT version FROM migrations")
        done = {row[0] for row in await cursor.fetchall()}
        applied = []
        for version, name, text in load_migrations("postgres"):
            if version in done:
                continue
            async with conn.transaction():
                # Several statements: the simple query protocol, never prepared.
                await conn.execute(text.encode(), prepare=False)
                await conn.execute(
                    "INSERT INTO migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    [version, name, time.time()],
                )
            applied.append(f"{version:04d}_{name}")
        return applied

    async def ping(self) -> None:
        async with self._translate("ping"), self._open_pool().connection() as conn:
            await conn.execute("SELECT 1")

    async def database_time(self) -> float:
        async with self._translate("reading the clock"), self._open_pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())::double precision"
            )
            row = await cursor.fetchone()
        assert row is not None
        return float(row[0])

    # -- running programs --------------------------------------------------------------------------

    async def _run(self, program: Program) -> Any:
        pool = self._open_pool()
        async with self._translate("running a transaction"), pool.connection() as conn:
            try:
                await conn.execute(b"BEGIN")
                result, notify = await self._execute(conn, program)
                # Once per transaction, however often the program asked, and in the round
                # trip of the COMMIT.
                await conn.execute(self._commit_notify if notify else b"COMMIT", prepare=False)
            except BaseException as exc:
                if isinstance(exc, _UNAVAILABLE) and conn.broken:
                    self._sweep()  # its siblings in the pool likely died with it
                elif conn.info.transaction_status != TransactionStatus.IDLE and not conn.broken:
                    with contextlib.suppress(Exception):
                        await conn.execute(b"ROLLBACK")
                raise
        if notify:
            self.notify_listeners()
        return result

    async def _record_batch(self, queries: Sequence[Query]) -> list[int]:
        """New steps on a connection of their own: the batcher writes one batch at a time, so
        the hot path skips the pool and psycopg's cursors (see :mod:`.pg_steps`): one round
        trip of a prepared statement, nothing else."""
        query = queries[0] if len(queries) == 1 else record_steps_query(queries)
        writer = self._step_writer
        try:  # as ``_translate`` does, written out: this is every step's path
            if writer is None or writer.closed:
                conn = await Connection.connect(self.url, **self._connect_kwargs())
                writer = self._step_writer = StepWriter(conn, self._step_statements)
            answer = await writer.fetch(query)  # a failure closes the writer
        except _UNAVAILABLE as exc:
            self._outage()
            raise StoreUnavailable(
                f"PostgreSQL ({self.schema}) unavailable while recording steps: {exc}"
            ) from exc
        if len(queries) == 1:
            return [int(answer)]
        return record_steps_counts(queries, answer)

    async def _write_starts(
        self, items: Sequence[tuple[NewRun, float]]
    ) -> list[tuple[str, bool] | Exception]:
        """A batch of starts in one round trip, on a connection of its own as new steps are:
        the ``start_runs`` function, in autocommit, inserts the runs and wakes the workers, and
        answers only the runs it did not create (an idempotency key or an id already taken)."""
        order = runs.write_order(items)
        ordered = [items[n] for n in order]
        params = {
            "runs": runs.run_rows(ordered),
            "expire": runs.expired_keys(ordered),
            "channel": self.channel,
            "sender": self._sender,
        }
        async with self._translate("starting runs"):
            writer = self._start_writer
            if writer is None or writer.closed:
                conn = await Connection.connect(self.url, **self._connect_kwargs())
                writer = self._start_writer = StepWriter(conn, self._start_statements)
            missed = await writer.fetch(Query("start_runs", params, "all"))
        if len(missed) < len(items):
            self.notify_listeners()  # runs were created: wake this process's workers too
        return runs.started(items, order, missed)

    async def _intake_batch(self, items: Sequence[Sending]) -> list[SentEvents]:
        """Events in one round trip: the ``intake_events`` function takes its locks, computes
        the events' wait keys, stores them, starts their runs, resolves their waits and claims
        runs for the items' :class:`ClaimRequest` (eager dispatch)."""
        claim = batch_claim(items)
        now = items[-1].now
        params = {
            "events": intake_payload(items),
            "channel": self.channel,
            "sender": self._sender,
            "claim": None
            if claim is None
            else json.dumps(
                {
                    "worker": claim.worker_id,
                    "limit": claim.limit,
                    "lease_until": now + claim.lease_seconds,
                    "now": now,
                }
            ),
        }
        async with self._translate("storing events"), self._own_connection("intake") as conn:
            row = await self._fetch(conn, Query("intake_events", params, "one"))
        answer: dict[str, Any] = row["answer"]
        if answer["work"]:
            # Having claimed for a worker, up to its free slots, its claim loop would find
            # nothing more: wake the others only; unless runs were cancelled (cancel_on), which
            # that worker may hold in a sleep.
            skip = None if claim is None or answer.get("cancels") else claim.worker_id
            self.notify_listeners(skip_worker=skip)
        results = intake_results(items, answer["results"])
        return share_claimed(items, results, claimed_runs(answer.get("claimed", ())), claim)

    async def claim_runs(
        self, worker_id: str, limit: int, lease_seconds: float, now: float
    ) -> list[ClaimedRun]:
        """A worker's claim, on the connection kept for claims: a claim a notification asked
        for is one round trip on a session whose plans are ready, with no pool in the way."""
        program = leases.claim_runs(worker_id, limit, lease_seconds, now)
        query = next(program)
        async with self._translate("claiming runs"), self._own_connection("claim") as conn:
            answer = await self._fetch(conn, query)
        try:
            program.send(answer)
        except StopIteration as stop:
            claimed: list[ClaimedRun] = stop.value
            return claimed
        raise RuntimeError("claim_runs sent more than one statement")

    async def offer_slots(self, worker_id: str, slots: int, lease_seconds: float) -> None:
        """One statement on the connection kept for claims (the worker's claim loop makes both,
        one after the other)."""
        params = {"worker_id": worker_id, "offered": slots, "lease_seconds": lease_seconds}
        async with self._translate("offering slots"), self._own_connection("claim") as conn:
            await self._fetch(conn, Query("offer_slots", params, "rowcount"))

    @contextlib.asynccontextmanager
    async def _own_connection(self, purpose: str) -> AsyncIterator[Connection]:
        """The connection kept for ``purpose`` (event intake, claims): the latency-bound
        statements of one writer at a time skip the pool, and their session's plans stay ready
        (a pooled session is taken in turn, so each plans every statement afresh at first).
        While it is in use, a pooled connection serves; a lost one is replaced on next use."""
        if purpose in self._own_busy:
            async with self._open_pool().connection() as pooled:
                yield pooled
            return
        self._own_busy.add(purpose)
        try:
            conn = self._own.get(purpose)
            if conn is not None and (conn.closed or conn.broken):
                del self._own[purpose]
                with contextlib.suppress(Exception):
                    await conn.close()
                conn = None
            if conn is None:
                self._open_pool()  # the store is open
                conn = await Connection.connect(self.url, **self._connect_kwargs())
                self._own[purpose] = conn
            try:
                yield conn
            except BaseException:
                if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    self._own.pop(purpose, None)
                    with contextlib.suppress(Exception):
                        await conn.close()
                raise
        finally:
            self._own_busy.discard(purpose)

    async def _run_one(self, query: Query) -> Any:
        """One statement in autocommit: no BEGIN and COMMIT, one round trip."""
        async with self._translate("running a statement"), self._open_pool().connection() as conn:
            return await self._fetch(conn, query)

    async def _execute(self, conn: Connection, program: Program) -> tuple[Any, bool]:
        notify = False
        answer: Any = None
        while True:
            try:
                query = program.send(answer)
            except StopIteration as stop:
                return stop.value, notify
            if query is NOTIFY:
                notify, answer = True, None
            else:
                answer = await self._fetch(conn, query)

    async def _fetch(self, conn: Connection, query: Query) -> Any:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(self._queries[query.name], query.params)
        if query.fetch == "all":
            return await cursor.fetchall()
        if query.fetch == "one":
            return await cursor.fetchone()
        if query.fetch == "rowcount":
            return cursor.rowcount
        return None

    # -- liveness ----------------------------------------------------------------------------------

    async def register_worker(self, worker_id: str, now: float) -> None:
        self._alive.add(worker_id)
        await self._on_liveness(now, None)

    async def unregister_worker(self, worker_id: str) -> None:
        self._alive.discard(worker_id)
        if worker_id in self._locked:
            params = {"worker_id": worker_id, "lock_class": self._lock_class}
            await self._on_liveness(None, Query("unregister_worker", params, "all"))
            self._locked.discard(worker_id)
        if not self._alive:
            await self._drop_liveness()

    async def reap_workers(self, now: float) -> list[str]:
        params = {
            "now": now,
            "grace": _LIVENESS_GRACE_SECONDS,
            "lock_class_oid": self._lock_class & 0xFFFFFFFF,  # pg_locks shows it as an oid
        }
        # Unless this look answers: a look that failed (an outage) is not to be retried at once.
        self.reap_due_at = None
        rows = await self._on_liveness(now, Query("reap_workers", params, "all"), notify=_taken)
        taken = [row["id"] for row in rows if row["kind"] == "run"]
        pending = [row["free_since"] for row in rows if row["kind"] == "worker"]
        self.reap_due_at = min(pending) + _LIVENESS_GRACE_SECONDS if pending else None
        if taken:
            self.notify_listeners()
        return taken

    async def list_workers(self) -> list[tuple[str, float]]:
        rows = await self._run_one(Query("list_workers", {}, "all"))
        return [(row["id"], row["registered_at"]) for row in rows]

    async def _on_liveness(
        self,
        now: float | None,
        query: Query | None,
        *,
        notify: Callable[[Any], bool] | None = None,
        probe: bool = False,
    ) -> Any:
        """Run ``query`` on the liveness connection, (re)connecting and locking for every worker
        of this process first if that connection was lost; the connection is given up if the
        server does not answer in time (frozen), so a fresh one locks again once it does.
        Between round trips the connection's socket is watched (``_liveness_stirred``)."""
        async with self._liveness_mutex:
            self._unwatch()  # the driver waits on that socket itself during the round trip
            try:
                # A connection that broke since its last use is noticed by the next round trip:
                # then one more try, on a fresh connection, at once.
                for retry in (self._liveness is not None, False):
                    try:
                        async with asyncio.timeout(_LIVENESS_TIMEOUT_SECONDS):
                            return await self._liveness_round_trip(now, query, notify, probe)
                    except (TimeoutError, *_UNAVAILABLE) as exc:
                        await self._drop_liveness()
                        if not retry or isinstance(exc, TimeoutError):
                            message = (
                                f"PostgreSQL ({self.schema}) unavailable while checking workers"
                            )
                            raise StoreUnavailable(f"{message}: {exc!r}") from exc
            finally:
                self._watch()
        raise AssertionError("unreachable")

    async def _liveness_round_trip(
        self,
        now: float | None,
        query: Query | None,
        notify: Callable[[Any], bool] | None,
        probe: bool,
    ) -> Any:
        conn = await self._liveness_connection(now)
        if probe:
            await conn.execute("SELECT 1")
        if query is None:
            return None
        answer = await self._fetch(conn, query)
        if notify is not None and notify(answer):  # wake the workers of other processes
            await conn.execute("SELECT pg_notify(%s, %s)", [self.channel, self._sender])
        return answer

    def _watch(self) -> None:
        """Between round trips nothing is asked of the liveness connection, so a readable socket
        means the server spoke unasked: nearly always to end the session (terminated, shutting
        down), which released this process's locks. See ``_liveness_stirred``."""
        conn = self._liveness
        if self._watched is not None or conn is None or conn.closed or conn.broken:
            return
        if not self._locked:
            return
        fd = conn.fileno()
        asyncio.get_running_loop().add_reader(fd, self._liveness_stirred)
        self._watched = fd

    def _unwatch(self) -> None:
        fd, self._watched = self._watched, None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)

    def _liveness_stirred(self) -> None:
        """Lock again at once, on a fresh connection, instead of at the next look for dead
        workers: the others take a lock free for the grace as a death. If the server does not
        answer yet (a restart), try again every moment until it does."""
        self._unwatch()
        if self._alive and (self._relock is None or self._relock.done()):
            self._relock = asyncio.get_running_loop().create_task(
                self._relock_soon(), name="dataflows-relock"
            )

    async def _relock_soon(self) -> None:
        while self._alive:
            try:
                await self._on_liveness(None, None, probe=True)
                return
            except StoreUnavailable:
                await asyncio.sleep(_RELOCK_RETRY_SECONDS)

    async def _liveness_connection(self, now: float | None) -> Connection:
        conn = self._liveness
        if conn is None or conn.closed or conn.broken:
            await self._drop_liveness()
            kwargs = self._connect_kwargs()
            kwargs["options"] = f"{kwargs['options']} {_LIVENESS_OPTIONS}"
            conn = self._liveness = await Connection.connect(self.url, **kwargs)
        for worker_id in sorted(self._alive - self._locked):
            params = {
                "worker_id": worker_id,
                "now": time.time() if now is None else now,
                "lock_class": self._lock_class,
            }
            # A key from the sequence is free unless it wrapped round onto a live worker's.
            while await self._fetch(conn, Query("register_worker", params, "one")) is None:
                pass
            self._locked.add(worker_id)
        return conn

    async def _drop_liveness(self) -> None:
        """Close the liveness connection: the server releases its locks when the session ends."""
        self._unwatch()
        conn, self._liveness = self._liveness, None
        self._locked.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- connections -------------------------------------------------------------------------------

    async def _first_connection(self) -> Connection:
        """A connection, or the dataflows error that says why there is none."""
        kwargs = self._connect_kwargs()
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await Connection.connect(self.url, **kwargs)
        except TimeoutError:
            params = conninfo_to_dict(self.url)
            reason = f"no answer within {self.connect_timeout:g} s"
            raise DatabaseUnreachable(address(params), reason) from None
        except psycopg.Error as exc:
            raise connect_error(exc, self.url) from exc

    def _new_pool(self) -> AsyncConnectionPool[Connection]:
        return AsyncConnectionPool(
            self.url,
            kwargs=self._connect_kwargs(),
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=self.timeout,
            open=False,
            name=f"dataflows:{self.schema}",
        )

    def _outage(self) -> None:
        """A connection failed: watch for the database to answer again (see ``_recover``)."""
        if self._pool is not None and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.create_task(self._recover(), name="dataflows-recover")

    async def _recover(self) -> None:
        """Try a fresh connection every moment until one succeeds, then give the store a new
        pool at once: the old pool's own reconnects back off for seconds after an outage, and
        requests would wait for them. The old pool closes in the background, once the
        connections still out (a frozen server's, say) come back or time out."""
        while True:
            try:
                async with asyncio.timeout(_RECOVERY_CONNECT_SECONDS):
                    conn = await Connection.connect(self.url, **self._connect_kwargs())
                await conn.close()
                break
            except (TimeoutError, *_UNAVAILABLE):
                await asyncio.sleep(_RECOVERY_POLL_SECONDS)
        old = self._pool
        if old is None:  # closed meanwhile
            return
        fresh = self._new_pool()
        await fresh.open(wait=False)
        self._pool = fresh
        logger.info("PostgreSQL (%s) answers again; connections renewed", self.schema)
        await old.close(timeout=self.timeout)

    def _open_pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    def _connect_kwargs(self) -> dict[str, Any]:
        """Every connection: autocommit (transactions are explicit), our schema on the path."""
        try:
            given = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            hint = scrub(str(exc), self.url).strip()
            raise InvalidDatabaseURL(redact_password(self.url), hint) from None
        kwargs: dict[str, Any] = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
        options = given.get("options", "")
        kwargs["options"] = f'{options} -c search_path="{self.schema}"'.strip()
        kwargs["autocommit"] = True
        # Every statement the store sends is one of a fixed set: prepare each on first use, so
        # a rarely sent one (a claim, a wait) is not planned again on every call.
        kwargs["prepare_threshold"] = 0
        return kwargs

    def _translate(self, doing: str) -> _Translate:
        return _Translate(f"PostgreSQL ({self.schema}) unavailable while {doing}", self._outage)

    def _sweep(self) -> None:
        """Check the idle pooled connections in the background, dropping dead ones at once."""
        if self._pool is not None and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.create_task(self._pool.check(), name="dataflows-pool-check")

    # -- wake-ups from other processes ------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the hint channel take anything down
                logger.debug("dataflows listener on %s lost: %r; retrying", self.channel, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_SECONDS)

    async def _listen(self) -> None:
        conn = await Connection.connect(self.url, **self._connect_kwargs())
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.notify_listeners()  # whatever was sent while we were not listening
            while True:
                async for notify in conn.notifies(timeout=_LISTEN_CHECK_SECONDS):
                    self._notified(notify.payload)
                # Quiet for a while: make sure the connection is still alive.
                await asyncio.wait_for(conn.execute("SELECT 1"), _LISTEN_CHECK_SECONDS)

    def _notified(self, payload: str) -> None:
        """A notification: a plain one (its payload the sending store's mark) wakes the
        listeners unless this store sent it (it woke them itself); one that hands runs to a
        worker (see ``intake_events``) goes to that worker if it is here, and wakes the others
        only when it says there may be more."""
        if not payload.startswith("{"):
            if payload != self._sender:
                self.notify_listeners()
            return
        try:
            message = json.loads(payload)
            target = str(message["w"])
            runs = claimed_runs(message["runs"])
        except (ValueError, KeyError, TypeError) as exc:  # not ours to read: wake everyone
            logger.debug("unreadable notification on %s: %r", self.channel, exc)
            self.notify_listeners()
            return
        more = bool(message.get("more"))
        assignee = self._assignees.get(target)
        if assignee is not None:
            assignee(runs, more)
        if more and message.get("s") != self._sender:
            self.notify_listeners(skip_worker=target)


class _Translate:
    """Turn driver connection errors into StoreUnavailable, keeping the cause."""

    def __init__(self, message: str, on_unavailable: Callable[[], None]) -> None:
        self.message = message
        self.on_unavailable = on_unavailable

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, _UNAVAILABLE):
            self.on_unavailable()
            raise StoreUnavailable(f"{self.message}: {exc}") from exc


def _taken(rows: list[dict[str, Any]]) -> bool:
    """Whether a reap ended leases, which other processes' workers are woken to claim."""
    return any(row["kind"] == "run" for row in rows)


def worker_lock_class(schema: str) -> int:
    """The first key of the schema's worker locks: a signed 32-bit hash of its name, so that
    stores in other schemas of the same database do not share locks."""
    digest = sha256(f"dataflows.workers/{schema}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _channel(schema: str) -> str:
    """``dataflows_<schema>``; hashed if that would pass PostgreSQL's 63-byte name limit."""
    channel = f"dataflows_{schema}"
    if len(channel) > 63:
        channel = "dataflows_" + sha256(schema.encode()).hexdigest()[:32]
    return channel
