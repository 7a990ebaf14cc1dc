"""Log a database outage in a few lines instead of one per retried operation.

While the database is unreachable a worker retries everything (claims, heartbeats, step records)
and its connection pool warns on every failed connection attempt: hundreds of lines a minute that
bury everything else. :data:`STORE_OUTAGE` turns that into one WARNING when the database becomes
unreachable, a summary every :data:`SUMMARY_EVERY` seconds while it stays so, and one WARNING,
with the outage's duration, when an operation succeeds again. It is per process: every worker and
app in the process reports to it. :func:`watch_pool_logs` routes the pool's connection warnings
through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dataflows.durations import format_duration

__all__ = ["SUMMARY_EVERY", "STORE_OUTAGE", "StoreOutage", "watch_pool_logs"]

#: Seconds between "still unreachable" lines while an outage lasts.
SUMMARY_EVERY = 60.0

#: The pool's warnings that mean "the database is unreachable" (psycopg_pool's wording), and
#: what the outage says of each.
_POOL_LOGGER = "psycopg.pool"
_POOL_OUTAGE_MESSAGES = {
    "error connecting": None,  # its own message says why
    "discarding closed connection": "the server closed a pooled connection",
}


class StoreOutage:
    """Whether the database is reachable, as the process last saw it, and its outage lines."""

    def __init__(
        self,
        logger: logging.Logger,
        summary_every: float = SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.summary_every = summary_every
        self.clock = clock
        #: When the outage began (by ``clock``); ``None`` while the database answers.
        self.down_since: float | None = None
        self.retried = 0
        self._summarised_at = 0.0

    def unavailable(self, error: object) -> None:
        """An operation failed because the database could not be reached; it will be retried."""
        now = self.clock()
        if self.down_since is None:
            self.down_since = self._summarised_at = now
            self.retried = 1
            self.log.warning("database unreachable, retrying until it is back: %s", error)
            return
        self.retried += 1
        if now - self._summarised_at >= self.summary_every:
            self._summarised_at = now
            self.log.warning(
                "database still unreachable after %s: %d operations retried; last error: %s",
                format_duration(now - self.down_since),
                self.retried,
                error,
            )

    def available(self) -> None:
        """An operation succeeded: ends the outage, if there was one (one attribute check else)."""
        if self.down_since is None:
            return
        lasted = self.clock() - self.down_since
        self.down_since = None
        self.log.warning(
            "database reachable again after %s (%d operations retried)",
            format_duration(lasted),
            self.retried,
        )


STORE_OUTAGE = StoreOutage(logging.getLogger("dataflows.store"))


class _PoolOutageFilter(logging.Filter):
    """Drops the pool's per-connection warnings, reporting each to the outage instead."""

    def __init__(self, outage: StoreOutage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not isinstance(record.msg, str):
            return True
        for start, says in _POOL_OUTAGE_MESSAGES.items():
            if record.msg.startswith(start):
                self.outage.unavailable(says or record.getMessage())
                return False
        return True


def watch_pool_logs(outage: StoreOutage = STORE_OUTAGE) -> None:
    """Route the connection pool's "cannot connect" warnings through ``outage`` (once)."""
    logger = logging.getLogger(_POOL_LOGGER)
    if not any(isinstance(f, _PoolOutageFilter) for f in logger.filters):
        logger.addFilter(_PoolOutageFilter(outage))
