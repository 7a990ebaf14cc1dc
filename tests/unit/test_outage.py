"""A database outage is logged in a few lines: when it starts, every minute it lasts, when it ends."""

from __future__ import annotations

import logging

import pytest

from dataflows.outage import StoreOutage, watch_pool_logs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tests.outage"]


def test_an_outage_is_three_kinds_of_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    outage = StoreOutage(logging.getLogger("tests.outage"), summary_every=60, clock=clock)
    caplog.set_level(logging.INFO)
    outage.available()  # nothing to say while the database answers
    for _ in range(210):  # a failure a second for three minutes and a half
        outage.unavailable("connection refused")
        clock.now += 1
    outage.available()
    outage.available()
    assert messages(caplog) == [
        "database unreachable, retrying until it is back: connection refused",
        "database still unreachable after 1m 00s: 61 operations retried; last error: connection refused",
        "database still unreachable after 2m 00s: 121 operations retried; last error: connection refused",
        "database still unreachable after 3m 00s: 181 operations retried; last error: connection refused",
        "database reachable again after 3m 30s (210 operations retried)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "tests.outage")


def test_the_next_outage_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    outage = StoreOutage(logging.getLogger("tests.outage"), clock=clock)
    caplog.set_level(logging.INFO)
    outage.unavailable("a")
    clock.now += 0.5
    outage.available()
    clock.now += 100
    outage.unavailable("b")
    outage.unavailable("b")
    clock.now += 2
    outage.available()
    assert messages(caplog) == [
        "database unreachable, retrying until it is back: a",
        "database reachable again after 500 ms (1 operations retried)",
        "database unreachable, retrying until it is back: b",
        "database reachable again after 2.00 s (2 operations retried)",
    ]


def test_the_pool_warnings_go_through_the_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    outage = StoreOutage(logging.getLogger("tests.outage"), clock=clock)
    pool = logging.getLogger("psycopg.pool")
    before = list(pool.filters)
    caplog.set_level(logging.INFO)
    disabled, level = pool.disabled, pool.level
    pool.filters[:] = []  # an app opened earlier in this process watches them for the process
    pool.disabled, pool.level = False, logging.NOTSET  # as an earlier test may have left them
    try:
        watch_pool_logs(outage)
        watch_pool_logs(outage)  # once
        assert len(pool.filters) == 1
        for _ in range(5):
            pool.warning("error connecting in %r: %s", "dataflows", "connection refused")
        pool.warning("discarding closed connection: %s", "<conn>")
        pool.warning("something else")
    finally:
        pool.filters[:] = before
        pool.disabled, pool.level = disabled, level
    assert [r.getMessage() for r in caplog.records if r.name == "psycopg.pool"] == [
        "something else"
    ]
    assert messages(caplog) == [
        "database unreachable, retrying until it is back: "
        "error connecting in 'dataflows': connection refused"
    ]
    assert outage.retried == 6
