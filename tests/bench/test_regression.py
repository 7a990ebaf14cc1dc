"""The benchmark's regression guard: a quick sequential run against the bare INSERT round trip.

It fails only on a GROSS regression, measured as a ratio within the same run on the same server
— never on absolute times, which depend on the machine and its load. A step costs about one
INSERT round trip (the target is ≤ 1.6×; it measured 1.4–4.2× on the 2-core reference machine
under a concurrent test load, and 3–4× on the throwaway test server, whose fsync=off makes the
INSERT cheaper); the limit, 10×, is what an accidental extra round trip per step cannot reach but
a per-step poll, sleep or O(n²) history reload does. Best of three attempts, so
one noisy moment cannot fail it. The full benchmark is ``bench/run`` (docs/benchmarks.md).
"""

from __future__ import annotations

from bench.dbs import insert_round_trip
from bench.sys_dataflows import sequential
from tests.pg import DbTarget

STEPS = 200
INSERTS = 1000
ATTEMPTS = 3
MAX_RATIO = 10.0


def test_step_costs_a_small_multiple_of_an_insert_round_trip(pg_url: DbTarget) -> None:
    ratios = []
    for _ in range(ATTEMPTS):
        before = insert_round_trip(pg_url.url, INSERTS)
        run = sequential(pg_url.url, STEPS, schema=pg_url.schema)
        after = insert_round_trip(pg_url.url, INSERTS)
        ratios.append((run["seconds"] / run["steps"]) / ((before + after) / 2))
    best = min(ratios)
    assert best <= MAX_RATIO, (
        f"a sequential step costs {best:.1f}× a bare INSERT round trip (attempts: "
        + ", ".join(f"{r:.1f}×" for r in ratios)
        + f"); the guard allows {MAX_RATIO}×: something now does far more work per step"
    )


def test_sequential_reports_client_and_server_cpu(pg_url: DbTarget) -> None:
    """The CPU figures beside the wall time: this process's, and the local server's (the test
    server runs on this machine, as the benchmark's does)."""
    run = sequential(pg_url.url, STEPS, schema=pg_url.schema)
    assert 0 < run["client_cpu_seconds"] < run["seconds"] * 4  # at most every core, busy
    assert run["server_cpu_seconds"] >= 0
