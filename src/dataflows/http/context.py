"""What every route works with: the app, the limits, and the enabled webhook sources.

Every store operation a route waits for goes through :meth:`ApiContext.store`, which bounds the
wait (``DATAFLOWS_STORE_DEADLINE``, 2 s by default): a database that is stopped, frozen or
unreachable is answered ``503`` with ``Retry-After`` within that time, never after a client's
own timeout. The operation itself is not cancelled (cancelling a write half-sent to the
database would leave its outcome as unknown and its connection unusable): it finishes or fails
in the background, and a write that commits after its ``503`` is the same write a client's
retry finds already done (event ids and idempotency keys deduplicate it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from starlette.requests import Request

from dataflows.app import Dataflows
from dataflows.errors import StoreUnavailable
from dataflows.sources.base import Source

__all__ = ["DEFAULT_STORE_DEADLINE", "ApiContext", "context", "forget_outcome", "store_deadline"]

T = TypeVar("T")

#: Seconds a route waits for the database before it answers 503.
DEFAULT_STORE_DEADLINE = 2.0


@dataclass(slots=True)
class ApiContext:
    app: Dataflows
    api_keys: tuple[str, ...]
    max_body_bytes: int
    environ: Mapping[str, str]
    deadline: float = DEFAULT_STORE_DEADLINE
    #: The queue-depth read in flight for ``/metrics`` (one at a time, whatever the scrapes):
    #: queue depth ``(workflow, status, count)``, held runs ``(workflow, limit, count)`` and runs
    #: waiting for budgets ``(wait_reason, count)``.
    depth_read: (
        asyncio.Future[
            tuple[list[tuple[str, str, int]], list[tuple[str, str, int]], list[tuple[str, int]]]
        ]
        | None
    ) = field(default=None, repr=False)
    _sources: Mapping[str, Source] | None = field(default=None, repr=False)
    #: Set when the server stops: the dashboard's live-update streams end at once.
    stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def store(self, operation: Awaitable[T], deadline: float | None = None) -> T:
        """``operation``'s result, or :class:`StoreUnavailable` once ``deadline`` (default: the
        store deadline) has passed."""
        deadline = self.deadline if deadline is None else deadline
        task = asyncio.ensure_future(operation)
        try:
            return await asyncio.wait_for(asyncio.shield(task), deadline)
        except TimeoutError:
            task.add_done_callback(forget_outcome)  # it goes on; its outcome is nobody's to report
            raise StoreUnavailable(f"the database did not answer within {deadline:g} s") from None

    def sources(self) -> Mapping[str, Source]:
        """The enabled webhook sources by name, resolved once (at startup, or on first use)."""
        if self._sources is None:
            self._sources = _enabled_sources(self.app, self.environ)
        return self._sources


def _enabled_sources(app: Dataflows, environ: Mapping[str, str]) -> Mapping[str, Source]:
    """Sources configured in code plus those enabled by ``DATAFLOWS_{SOURCE}_SECRET``."""
    from dataflows.sources import enabled_sources  # imports every built-in source: only if used

    return enabled_sources(app.sources, environ)


def context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.dataflows)


def store_deadline(environ: Mapping[str, str]) -> float:
    """``DATAFLOWS_STORE_DEADLINE`` (seconds, above zero), else the default."""
    text = environ.get("DATAFLOWS_STORE_DEADLINE", "")
    try:
        value = float(text) if text else DEFAULT_STORE_DEADLINE
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"DATAFLOWS_STORE_DEADLINE={text!r}: expected seconds above zero")
    return value


def forget_outcome(task: asyncio.Future[Any]) -> None:
    """A done callback for work nobody waits for any more: its error is retrieved, so asyncio
    does not report it as lost."""
    if not task.cancelled():
        task.exception()
