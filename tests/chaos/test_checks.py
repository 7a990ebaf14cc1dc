"""The soak's judgements on made-up data: which duplicated effect a fault explains, and how a
takeover is timed. (The soak itself is tests/chaos/test_soak.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos.soak import Fault, Options, Soak, takeover

LEASE = 5.0


def judge(tmp_path: Path, faults: list[Fault]) -> Soak:
    soak = Soak(Options(lease=LEASE, echo=False), tmp_path)
    soak.faults = faults
    return soak


def effect(t: float, pid: int = 100) -> dict[str, Any]:
    return {"t": t, "pid": pid, "run": "r", "key": "charge", "effect": "e"}


TAKEN_OVER = ("r", "completed", "{}", 1, 1010.0)  # id, status, result, recoveries, completed_at


def test_a_copy_is_blamed_on_the_kill_or_freeze_of_its_own_worker(tmp_path: Path) -> None:
    soak = judge(
        tmp_path,
        [
            Fault("worker_kill", 1000.0, 1000.0, pid=100),
            Fault("worker_freeze", 2000.0, 2007.0, pid=200),
        ],
    )
    assert soak.crash_point(effect(999.9), TAKEN_OVER) == "killed"
    assert soak.crash_point(effect(999.9, pid=101), TAKEN_OVER) == "unexplained"
    assert soak.crash_point(effect(900.0), TAKEN_OVER) == "unexplained"  # long before the kill
    assert soak.crash_point(effect(2007.1, pid=200), TAKEN_OVER) == "frozen"  # after SIGCONT
    assert soak.crash_point(effect(2030.0, pid=200), TAKEN_OVER) == "unexplained"


def test_a_copy_near_a_database_fault_is_blamed_on_it(tmp_path: Path) -> None:
    soak = judge(
        tmp_path,
        [Fault("pg_freeze", 1000.0, 1003.0), Fault("proxy_drop", 2000.0, 2000.0)],
    )
    assert soak.crash_point(effect(1002.0), TAKEN_OVER) == "database outage"
    assert soak.crash_point(effect(1999.0), TAKEN_OVER) == "connection cut"
    assert soak.crash_point(effect(1500.0), TAKEN_OVER) == "unexplained"


def test_no_copy_is_explained_on_a_run_nobody_took_over(tmp_path: Path) -> None:
    soak = judge(tmp_path, [Fault("worker_kill", 1000.0, 1000.0, pid=100)])
    never_recovered = ("r", "completed", "{}", 0, 1010.0)
    assert soak.crash_point(effect(999.9), never_recovered) == "unexplained"
    assert soak.crash_point(effect(999.9), None) == "unexplained"


def test_takeover_is_the_next_record_after_the_fault() -> None:
    # run_id, step_key, kind, status, output, started_at, completed_at
    steps = {
        "reserve": ("r", "reserve", "run", "completed", "{}", 990.0, 995.0),
        "settle": ("r", "settle", "sleep", "completed", "null", 995.0, 1004.5),
        "paid": ("r", "paid", "wait", "completed", "{}", 1006.0, 1009.0),
    }
    assert takeover(1000.0, steps, TAKEN_OVER) == 4.5
    assert takeover(1005.0, steps, TAKEN_OVER) == 1.0  # a wait counts from when it was reached
    assert takeover(1009.5, steps, TAKEN_OVER) == 0.5  # the run's completion
    assert takeover(1020.0, steps, TAKEN_OVER) is None
