"""When a schedule fires: a standard cron expression read in an IANA time zone.

A cron expression names *wall-clock* times (``30 2 * * *``: 02:30 on the zone's clocks). Most
days each wall-clock time is one instant, but a daylight-saving change makes some wall-clock
times happen never or twice. The rule here is the one Vixie cron follows:

* An expression with a fixed hour (``30 2 * * *``, ``0 9 * * 1-5``) names a time of day. A time
  the clocks skip (spring forward, 02:00 -> 03:00 in Europe/Berlin) fires once, at the first
  instant after the jump (03:00 local); a time the clocks show twice (autumn back) fires once, at
  its first occurrence.
* An expression whose hour field is a wildcard (``*``, ``*/2``: ``30 * * * *``, ``*/15 * * * *``)
  follows elapsed time: a skipped hour has no ticks, a repeated hour has its ticks twice.

Ticks are instants, seconds since the epoch; a tick the rules produce twice is one tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# croniter (with dateutil) is imported where an expression is read: a process whose code and
# store have no schedules never loads it.

CatchUp = Literal["latest", "none", "all"]
CATCH_UP_MODES: tuple[str, ...] = get_args(CatchUp)

#: The ``@name`` shorthands and the five fields each stands for.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Wider than any daylight-saving shift: how far around an instant wall-clock times are looked
#: at, since near a shift the order of wall-clock times and of instants can differ.
_MARGIN = timedelta(hours=3)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"})


def cron_fields(expr: str) -> str:
    """The five fields of ``expr`` (an ``@name`` shorthand expanded); ``ValueError`` otherwise."""
    if not isinstance(expr, str):
        raise ValueError(f"a cron expression is a string, not {type(expr).__name__}")
    text = " ".join(expr.split())
    if text.startswith("@"):
        fields = ALIASES.get(text.lower())
        if fields is None:
            names = ", ".join(sorted(ALIASES))
            raise ValueError(f"unknown shorthand {expr!r}: use one of {names}")
        return fields
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"{expr!r} is not a cron expression: five fields (minute hour day-of-month month "
            "day-of-week) or a shorthand such as @hourly"
        )
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ValueError(f"{expr!r} is not a valid cron expression")
    return text


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` for an unknown one."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'"
        ) from None


def check_catch_up(value: object) -> CatchUp:
    if value not in CATCH_UP_MODES:
        raise ValueError(f"{value!r} is not one of {', '.join(map(repr, CATCH_UP_MODES))}")
    return value  # type: ignore[return-value]


class CronSchedule:
    """The ticks of ``expr`` in zone ``tz``. Raises ``ValueError`` for an expression that is not
    valid or never fires (``0 0 31 2 *``), or an unknown zone."""

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        self.expr = expr
        self.tz = tz
        self.fields = cron_fields(expr)
        self.zone = time_zone(tz)
        # An hour field of "*" or "*/n" follows elapsed time across DST changes (see above).
        self.wildcard_hour = self.fields.split(" ")[1].startswith("*")
        self._margin = timedelta(minutes=1) if tz in _UTC_NAMES else _MARGIN
        from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

        try:
            croniter(self.fields, datetime(2000, 1, 1)).get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError, CroniterError):
            raise ValueError(f"{expr!r} never fires") from None

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, {self.tz!r})"

    # -- instants --------------------------------------------------------------------------------

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        best: float | None = None
        for wall in self._walls(self._local(t) - self._margin, forward=True):
            if best is not None and wall > self._local(best) + self._margin:
                break
            for instant in self._instants(wall):
                if instant > t and (best is None or instant < best):
                    best = instant
        assert best is not None
        return best

    def latest_at_or_before(self, t: float) -> float:
        """The last tick at or before ``t``."""
        best: float | None = None
        for wall in self._walls(self._local(t) + self._margin, forward=False):
            if best is not None and wall < self._local(best) - self._margin:
                break
            for instant in self._instants(wall):
                if instant <= t and (best is None or instant > best):
                    best = instant
        assert best is not None
        return best

    def between(self, after: float, until: float, limit: int) -> list[float]:
        """The first ``limit`` ticks in ``(after, until]``, in order."""
        found: set[float] = set()
        stop = self._local(until) + self._margin
        for wall in self._walls(self._local(after) - self._margin, forward=True):
            if wall > stop:
                break
            found.update(i for i in self._instants(wall) if after < i <= until)
            if len(found) >= limit:
                # Enough; only wall-clock times within the margin can still hold earlier ticks.
                stop = min(stop, wall + self._margin)
        return sorted(found)[:limit]

    def iso(self, t: float) -> str:
        """``t`` in this zone, ISO 8601 with its UTC offset: ``2025-03-30T03:00:00+02:00``."""
        return datetime.fromtimestamp(t, self.zone).isoformat()

    # -- wall-clock times --------------------------------------------------------------------------

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.zone).replace(tzinfo=None)

    def _walls(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        """The wall-clock times the fields match, strictly after (or before) ``start``."""
        from croniter import croniter

        it = croniter(self.fields, start)
        while True:
            wall = it.get_next(datetime) if forward else it.get_prev(datetime)
            yield wall

    def _instants(self, wall: datetime) -> list[float]:
        """The instants at which the zone's clocks show ``wall``, by the rules above."""
        first = wall.replace(tzinfo=self.zone, fold=0).timestamp()
        second = wall.replace(tzinfo=self.zone, fold=1).timestamp()
        if first == second:
            return [first]
        if first < second:  # shown twice (clocks went back)
            return [first, second] if self.wildcard_hour else [first]
        # Skipped (clocks went forward): fold=1 reads it with the offset after the jump, which
        # is an instant before the jump.
        return [] if self.wildcard_hour else [self._end_of_gap(second, wall)]

    def _end_of_gap(self, before: float, wall: datetime) -> float:
        """The first whole minute from ``before`` on at which the clocks show ``wall`` or later:
        the instant the clocks jumped past it."""
        t = before - before % 60
        while self._local(t) < wall:
            t += 60
        return t


def utc_iso(t: float) -> str:
    """``t`` as ``2025-03-30T01:00:00Z`` (UTC, whole seconds): a stable name for a tick."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
