"""The duration grammar: unit strings and their combinations, numbers, timedeltas."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

import dataflows as df
from dataflows.durations import parse_duration, to_timestamp


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86_400.0),
        ("7d", 604_800.0),
        ("2w", 1_209_600.0),
        ("1h30m", 5_400.0),
        ("1d12h", 129_600.0),
        ("2m30s500ms", 150.5),
        ("1.5h", 5_400.0),
        ("0s", 0.0),
        ("0.25s", 0.25),
        (" 30S ", 30.0),  # surrounding blanks and upper case are forgiven
        ("1M", 60.0),  # case-insensitive: M is minutes, never months
    ],
)
def test_unit_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (0.25, 0.25),
        (-3, -3.0),  # zero or negative: the sleep returns at once
        (timedelta(minutes=1, seconds=30), 90.0),
        (timedelta(milliseconds=500), 0.5),
        (timedelta(seconds=-1), -1.0),
    ],
)
def test_numbers_and_timedeltas(value: Any, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds and type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "5",  # a bare number in a string has no unit: ambiguous, refused
        "abc",
        "5x",
        "ms",
        "s5",
        "1h 30m",  # combinations are written without blanks
        "1h,30m",
        "-5s",  # negative durations are numbers or timedeltas only
        "+5s",
        "1e3s",
        ".5s",
        "5.s",
        "5 s",
        "1y",
        "nan",
        "inf",
        "P1D",  # ISO 8601 is not part of the grammar
        True,
        False,
        None,
        math.nan,
        math.inf,
        -math.inf,
        Decimal("5"),
        [5],
        b"5s",
    ],
)
def test_everything_else_is_refused_naming_the_grammar(value: Any) -> None:
    with pytest.raises(df.InvalidDuration) as raised:
        parse_duration(value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, df.DataflowsError)
    assert raised.value.value is value or raised.value.value == value
    message = str(raised.value)
    assert repr(value) in message
    assert "ms, s, m, h, d, w" in message and "'1h30m'" in message


def test_sleep_until_accepts_aware_datetimes_and_timestamps_only() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert to_timestamp(when) == when.timestamp()
    assert to_timestamp(when.astimezone(timezone(timedelta(hours=5)))) == when.timestamp()
    assert to_timestamp(1_700_000_000) == 1_700_000_000.0
    for bad in (datetime(2030, 1, 2), True, math.nan, "2030-01-02", None):
        with pytest.raises(ValueError):
            to_timestamp(bad)  # type: ignore[arg-type]
