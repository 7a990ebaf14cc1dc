"""The connection new step results are written on, speaking libpq directly.

Recording a step is the hot path of every run: one fenced ``INSERT`` before the workflow's next
line runs. Through psycopg's cursors each such round trip costs more client CPU than the
database spends on it (query conversion, the prepared-statement cache, registering and
unregistering the socket with the event loop for every wait). This writer sends the same
statements, prepared once per connection, with their parameters in text form, and keeps its
socket registered with the event loop for as long as it lives: a round trip is a send, one
wake-up and the result. The wake-up resumes the waiting write at once, in the turn of the event
loop that found the answer (see :class:`Answer`). It is used by one writer at a time (the step
batcher's). The batches of ``app.start`` go through a writer of their own, on a connection of
their own, the same way.

Any failure (connection lost, server error, cancellation mid-way) closes the connection: the
next write opens a fresh one, and its statements are prepared again there.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import struct
from collections.abc import Callable, Generator
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.rows import TupleRow

from dataflows.store.program import Query

Connection = psycopg.AsyncConnection[TupleRow]

_TEXT, _INT4, _INT8, _FLOAT8, _JSONB = 25, 23, 20, 701, 3802
_BINARY, _AS_TEXT = 1, 0
#: Each parameter the step statements take: its PostgreSQL type (oid), the format it is sent
#: in, and how a (non-null) value is written: numbers in binary (no float formatting), text as
#: UTF-8.
_PARAMETERS: dict[str, tuple[int, int, Callable[[Any], bytes]]] = {
    "run_id": (_TEXT, _AS_TEXT, str.encode),
    "lease_token": (_INT8, _BINARY, struct.Struct(">q").pack),
    "key": (_TEXT, _AS_TEXT, str.encode),
    "kind": (_TEXT, _AS_TEXT, str.encode),
    "status": (_TEXT, _AS_TEXT, str.encode),
    "output": (_TEXT, _AS_TEXT, str.encode),
    "error": (_TEXT, _AS_TEXT, str.encode),
    "attempts": (_INT4, _BINARY, struct.Struct(">i").pack),
    "event_id": (_TEXT, _AS_TEXT, str.encode),
    "started_at": (_FLOAT8, _BINARY, struct.Struct(">d").pack),
    "now": (_FLOAT8, _BINARY, struct.Struct(">d").pack),
    "steps": (_JSONB, _AS_TEXT, str.encode),
    "runs": (_JSONB, _AS_TEXT, str.encode),
    "expire": (_JSONB, _AS_TEXT, str.encode),
    "channel": (_TEXT, _AS_TEXT, str.encode),
    "sender": (_TEXT, _AS_TEXT, str.encode),
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
#: The statuses of a statement that succeeded.
_SUCCEEDED = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK})


class Statement:
    """A named query rewritten for libpq: ``$n`` placeholders, and its parameters in order."""

    def __init__(self, name: str, text: str) -> None:
        self.name = f"dataflows_{name}".encode()
        names: list[str] = []

        def number(found: re.Match[str]) -> str:
            if found[1] not in names:
                names.append(found[1])
            return f"${names.index(found[1]) + 1}"

        self.text = _PLACEHOLDER.sub(number, text).encode()
        self.types = [_PARAMETERS[n][0] for n in names]
        self.formats = [_PARAMETERS[n][1] for n in names]
        #: ``values(params)``: each parameter written, in order (``None`` for a null).
        self.values = _values_function(names)


def _values_function(names: list[str]) -> Callable[[dict[str, Any]], list[bytes | None]]:
    """A function writing these parameters, one expression each (written out rather than
    looped over: it runs for every step, and the loop cost more than the writing)."""
    scope: dict[str, Any] = {}
    items = []
    for i, name in enumerate(names):
        if not name.isidentifier():
            raise ValueError(f"invalid parameter name {name!r}")
        scope[f"write{i}"] = _PARAMETERS[name][2]
        items.append(f"None if (v{i} := params[{name!r}]) is None else write{i}(v{i})")
    exec(f"def values(params):\n    return [{', '.join(items)}]\n", scope)  # noqa: S102
    function: Callable[[dict[str, Any]], list[bytes | None]] = scope["values"]
    return function


class StepWriter:
    """One connection and its prepared step statements; :meth:`fetch` answers as
    ``PostgresStore._fetch`` does (a row count, or the rows as dicts)."""

    def __init__(self, conn: Connection, statements: dict[str, Statement]) -> None:
        self._conn = conn
        self._pg = conn.pgconn
        self._pg.nonblocking = 1
        self._statements = statements
        self._prepared: set[str] = set()
        self._loop = asyncio.get_running_loop()
        self._fd = self._pg.socket
        self._waiter: Answer | None = None
        self._failure: BaseException | None = None
        self._in_use = False  # a write is under way
        self.closed = False
        self._loop.add_reader(self._fd, self._readable)

    async def fetch(self, query: Query) -> Any:
        statement = self._statements[query.name]
        pg = self._pg
        self._in_use = True
        try:
            if query.name not in self._prepared:
                pg.send_prepare(statement.name, statement.text, statement.types)
                await self._sent()
                while pg.is_busy():
                    await self._more()
                self._check(self._result())
                self._prepared.add(query.name)
            pg.send_query_prepared(
                statement.name, statement.values(query.params), statement.formats
            )
            if pg.flush():  # the socket's buffer is full: rare, for a small statement
                await self._sent()
            while pg.is_busy():
                await self._more()
            result = self._check(self._result())
        except BaseException:
            await self.close()
            raise
        finally:
            self._in_use = False
        if query.fetch == "rowcount":
            return result.command_tuples
        columns = [result.fname(c).decode() for c in range(result.nfields)]  # type: ignore[union-attr]
        return [
            {
                name: None if (value := result.get_value(row, c)) is None else value.decode()
                for c, name in enumerate(columns)
            }
            for row in range(result.ntuples)
        ]

    async def _sent(self) -> None:
        """Wait until what is buffered is sent."""
        while self._pg.flush():
            writable: asyncio.Future[None] = self._loop.create_future()
            self._loop.add_writer(self._fd, writable.set_result, None)
            try:
                await writable
            finally:
                self._loop.remove_writer(self._fd)

    def _more(self) -> Answer:
        """What to await for more of the answer (the reader callback resolves it)."""
        if self._failure is not None:
            raise self._failure
        self._waiter = Answer(self._loop)
        return self._waiter

    def _result(self) -> pq.abc.PGresult:
        """The answer, complete, read to its end."""
        result = self._pg.get_result()
        while self._pg.get_result() is not None:  # the end of the answer
            pass
        if result is None:
            raise psycopg.OperationalError("the step connection returned no result")
        return result

    def _readable(self) -> None:
        try:
            self._pg.consume_input()
        except Exception as exc:  # the connection is lost: fail the write waiting, if any
            self._failure = exc
            self._loop.remove_reader(self._fd)
        waiter = self._waiter
        if waiter is not None:
            if self._failure is not None or not self._pg.is_busy():
                self._waiter = None
                waiter.resolve(self._failure)  # the write goes on now, before this returns
        elif not self._in_use and self._failure is not None:
            # Lost between writes (the server ended the session: a restart, a failover, an
            # administrator): closed now, so the next write opens a fresh connection instead of
            # failing on this one.
            self.closed = True
            self._pg.finish()

    def _check(self, result: pq.abc.PGresult) -> pq.abc.PGresult:
        if result.status in _SUCCEEDED:
            return result
        raise errors.error_from_result(result, encoding=self._conn.info.encoding)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._failure is None:
            self._loop.remove_reader(self._fd)
        await self._conn.close()


class Answer:
    """What a write awaits: its answer, complete. An awaitable that a task waits on as on a
    future, except that whoever resolves it (the socket's reader callback) resumes the task at
    once instead of scheduling it for the event loop's next turn, which would cost every step
    a further turn and ``epoll_wait``.

    Tasks accept any object that behaves as a future (``_asyncio_future_blocking``,
    ``get_loop``, ``add_done_callback``, ``result``, ``cancel``); cancelling the task cancels
    this, and the task is then woken through the loop as for a future.
    """

    __slots__ = ("_asyncio_future_blocking", "_loop", "_callback", "_context", "_done", "_error")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._asyncio_future_blocking = False
        self._loop = loop
        self._callback: Callable[[Answer], object] | None = None
        self._context: contextvars.Context | None = None
        self._done = False
        self._error: BaseException | None = None

    def __await__(self) -> Generator[Answer, None, None]:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self  # the task calls add_done_callback
        self.result()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return isinstance(self._error, asyncio.CancelledError)

    def add_done_callback(
        self, callback: Callable[[Answer], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._done:
            self._loop.call_soon(callback, self, context=context)
        else:  # one awaiting task, as for the futures asyncio's own primitives wait on
            self._callback, self._context = callback, context

    def remove_done_callback(self, callback: Callable[[Answer], object]) -> int:
        if self._callback is not callback:
            return 0
        self._callback = self._context = None
        return 1

    def result(self) -> None:
        if self._error is not None:
            raise self._error

    def exception(self) -> BaseException | None:
        return self._error

    def cancel(self, msg: Any = None) -> bool:
        if self._done:
            return False
        self._done = True
        self._error = asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
        callback, context = self._callback, self._context
        self._callback = self._context = None
        if callback is not None:
            self._loop.call_soon(callback, self, context=context)
        return True

    def resolve(self, error: BaseException | None = None) -> None:
        """The answer is complete (or failed with ``error``): run the waiting task now."""
        if self._done:
            return
        self._done = True
        self._error = error
        callback, context = self._callback, self._context
        self._callback = self._context = None
        if callback is None:
            return
        try:
            if context is None:
                callback(self)
            else:
                context.run(callback, self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # as the event loop reports a failing callback
            self._loop.call_exception_handler(
                {"message": "exception in the step writer's wake-up", "exception": exc}
            )
