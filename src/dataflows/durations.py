"""Parsing durations: ``"500ms"``, ``"30s"``, ``"1h30m"``, ``"7d"``, numbers of seconds, timedeltas."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from dataflows.errors import InvalidDuration

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")

Duration = float | int | str | timedelta


def parse_duration(value: object) -> float:
    """Return ``value`` as seconds (possibly zero or negative), or raise :class:`InvalidDuration`."""
    if isinstance(value, bool):
        raise InvalidDuration(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidDuration(value)
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if _WHOLE.fullmatch(text):
            return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    raise InvalidDuration(value)


def to_timestamp(when: datetime | float | int) -> float:
    """Seconds since the epoch for an aware datetime (naive datetimes are rejected)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("sleep_until needs a timezone-aware datetime")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise ValueError(f"expected an aware datetime or a timestamp, got {when!r}")
    return float(when)


def format_duration(seconds: float) -> str:
    """Seconds for a person: ``850 ms``, ``2.40 s``, ``3m 05s``, ``2h 03m``, ``4d 02h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"
