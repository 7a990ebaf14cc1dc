"""When schedules fire: cron fields, time zones, daylight-saving changes, catch-up plans, and the
checks made when a workflow with a cron trigger is registered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import dataflows as df
from dataflows.scheduler import ON_TIME, plan, tick_id
from dataflows.schedules import CatchUp, CronSchedule, cron_fields

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def local_ticks(expr: str, start: float, end: float) -> list[str]:
    cron = CronSchedule(expr, "Europe/Berlin")
    return [cron.iso(t) for t in cron.between(start, end, 1000)]


# -- fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("  */5   9-17 * * 1-5 ", "*/5 9-17 * * 1-5"),
    ],
)
def test_shorthands_and_spacing(expr: str, fields: str) -> None:
    assert cron_fields(expr) == fields


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("61 * * * *", "not a valid cron expression"),
        ("* * * *", "five fields"),
        ("0 0 * * * *", "five fields"),  # seconds are not standard cron
        ("@reboot", "unknown shorthand"),
        ("0 0 31 2 *", "never fires"),
        ("", "five fields"),
    ],
)
def test_invalid_expressions(expr: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        CronSchedule(expr)


def test_plain_utc_ticks() -> None:
    cron = CronSchedule("15 */6 * * *")
    t = utc(2025, 1, 1, 6, 15)
    assert cron.next_after(t) == utc(2025, 1, 1, 12, 15)
    assert cron.next_after(t - 1) == t
    assert cron.latest_at_or_before(t) == t
    assert cron.latest_at_or_before(t - 1) == utc(2025, 1, 1, 0, 15)
    assert cron.between(t - 1, t + 12 * HOUR, 10) == [t, t + 6 * HOUR, t + 12 * HOUR]
    assert cron.between(t - 1, t + 12 * HOUR, 2) == [t, t + 6 * HOUR]
    assert cron.iso(t) == "2025-01-01T06:15:00+00:00"
    assert tick_id("report:0", t) == "cron:report:0:2025-01-01T06:15:00Z"


def test_a_zone_shifts_the_ticks() -> None:
    cron = CronSchedule("0 9 * * *", "America/New_York")
    assert cron.next_after(utc(2025, 1, 1)) == utc(2025, 1, 1, 14)  # EST: UTC-5
    assert cron.next_after(utc(2025, 7, 1)) == utc(2025, 7, 1, 13)  # EDT: UTC-4


def test_day_of_month_and_day_of_week_are_either_as_in_cron() -> None:
    # "the 13th, or any Friday"
    cron = CronSchedule("0 0 13 * 5")
    ticks = cron.between(utc(2025, 6, 1), utc(2025, 6, 30), 10)
    assert [datetime.fromtimestamp(t, UTC).day for t in ticks] == [6, 13, 20, 27]


# -- daylight saving (Europe/Berlin: 2025-03-30 02:00 -> 03:00, 2025-10-26 03:00 -> 02:00) ------


def test_spring_forward_a_fixed_time_in_the_gap_fires_once_right_after_the_jump() -> None:
    ticks = local_ticks("30 2 * * *", berlin(2025, 3, 29), berlin(2025, 4, 1))
    assert ticks == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",  # 02:30 does not exist that day
        "2025-03-31T02:30:00+02:00",
    ]
    cron = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert cron.next_after(berlin(2025, 3, 29, 12)) == utc(2025, 3, 30, 1)


def test_spring_forward_an_hourly_schedule_has_no_tick_in_the_skipped_hour() -> None:
    ticks = local_ticks("30 * * * *", berlin(2025, 3, 30, 0), berlin(2025, 3, 30, 5))
    assert ticks == [
        "2025-03-30T00:30:00+01:00",
        "2025-03-30T01:30:00+01:00",
        "2025-03-30T03:30:00+02:00",
        "2025-03-30T04:30:00+02:00",
    ]
    day = CronSchedule("0 * * * *", "Europe/Berlin")
    assert len(day.between(berlin(2025, 3, 30) - 1, berlin(2025, 3, 31) - 1, 100)) == 23


def test_fall_back_a_fixed_time_in_the_repeated_hour_fires_once() -> None:
    ticks = local_ticks("30 2 * * *", berlin(2025, 10, 25), berlin(2025, 10, 28))
    assert ticks == [
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",  # its first occurrence only
        "2025-10-27T02:30:00+01:00",
    ]


def test_fall_back_an_hourly_schedule_fires_in_both_occurrences_of_the_hour() -> None:
    ticks = local_ticks("*/30 * * * *", berlin(2025, 10, 26, 1, 59), berlin(2025, 10, 26, 3, 1))
    assert ticks == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]
    day = CronSchedule("@hourly", "Europe/Berlin")
    assert len(day.between(berlin(2025, 10, 26) - 1, berlin(2025, 10, 27) - 1, 100)) == 25


def test_next_and_latest_agree_with_between_across_both_changes() -> None:
    for expr in ("30 2 * * *", "*/20 * * * *", "0 1-3 * * *"):
        cron = CronSchedule(expr, "Europe/Berlin")
        for start in (berlin(2025, 3, 29, 20), berlin(2025, 10, 25, 20)):
            ticks = cron.between(start, start + 12 * HOUR, 1000)
            assert ticks == sorted(set(ticks))
            walked = [cron.next_after(start)]
            while (following := cron.next_after(walked[-1])) <= start + 12 * HOUR:
                walked.append(following)
            assert walked == ticks, expr
            for t in ticks:
                assert cron.latest_at_or_before(t) == t
                assert cron.latest_at_or_before(t + 1) == t


# -- catch-up ------------------------------------------------------------------------------------


HOURLY = CronSchedule("0 * * * *")
T0 = utc(2025, 5, 1)  # a tick


def test_on_time_ticks_fire_in_every_mode() -> None:
    modes: tuple[CatchUp, ...] = ("latest", "none", "all")
    for mode in modes:
        assert plan(HOURLY, mode, T0, T0) == ([T0], T0 + HOUR)
        assert plan(HOURLY, mode, T0, T0 + ON_TIME) == ([T0], T0 + HOUR)
        assert plan(HOURLY, mode, T0, T0 - 1) == ([], T0)


def test_ten_missed_ticks() -> None:
    now = T0 + 9 * HOUR + 20 * 60  # ticks T0 .. T0+9h passed, none fired
    after = T0 + 10 * HOUR
    assert plan(HOURLY, "latest", T0, now) == ([T0 + 9 * HOUR], after)
    assert plan(HOURLY, "none", T0, now) == ([], after)
    ticks, next_at = plan(HOURLY, "all", T0, now)
    assert ticks == [T0 + n * HOUR for n in range(10)]
    assert next_at == after


def test_a_long_stop_catches_up_all_in_batches() -> None:
    now = T0 + 250 * HOUR + 1
    ticks, next_at = plan(HOURLY, "all", T0, now, limit=100)
    assert ticks == [T0 + n * HOUR for n in range(100)]
    assert next_at == T0 + 100 * HOUR
    ticks, next_at = plan(HOURLY, "all", next_at, now, limit=100)
    assert ticks[0] == T0 + 100 * HOUR and len(ticks) == 100
    ticks, next_at = plan(HOURLY, "all", next_at, now, limit=100)
    assert len(ticks) == 51 and next_at == T0 + 251 * HOUR


def test_latest_prefers_the_tick_on_time() -> None:
    now = T0 + 5 * HOUR + 10
    assert plan(HOURLY, "latest", T0, now) == ([T0 + 5 * HOUR], T0 + 6 * HOUR)
    assert plan(HOURLY, "none", T0, now) == ([T0 + 5 * HOUR], T0 + 6 * HOUR)


# -- registration ------------------------------------------------------------------------------------


async def noop(event: df.Event, step: df.Step) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"expr": "every day"}, "expr"),
        ({"expr": "0 25 * * *"}, "expr"),
        ({"expr": "0 0 30 2 *"}, "expr"),
        ({"expr": "* * * * *", "tz": "Europe/Atlantis"}, "tz"),
        ({"expr": "* * * * *", "tz": ""}, "tz"),
        ({"expr": "* * * * *", "catch_up": "some"}, "catch_up"),
    ],
)
def test_registration_names_the_workflow_and_the_option(
    options: dict[str, Any], option: str
) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError, match=rf"workflow 'nightly': cron {option}=") as info:
        app.workflow("nightly", trigger=[df.on_event("go"), df.cron(**options)])(noop)
    assert "nightly" not in app.registry
    print(info.value)


def test_a_workflow_may_have_several_cron_triggers() -> None:
    app = df.Dataflows("sqlite:///:memory:")
    app.workflow(
        "report",
        trigger=[
            df.cron("0 9 * * 1-5", tz="Europe/Berlin"),
            df.on_event("report/requested"),
            df.cron("@monthly", catch_up="all"),
        ],
    )(noop)
    workflow = app.registry.get("report")
    assert [(sid, t.expr) for sid, t in workflow.schedules()] == [
        ("report:0", "0 9 * * 1-5"),
        ("report:1", "@monthly"),
    ]
    # A cron trigger matches no event, the internal cron event included.
    assert app.registry.triggered_by("dataflows/cron") == []
    assert [w.id for w in app.registry.triggered_by("report/requested")] == ["report"]
