"""Upgrading a store whose waits are pending: every wait registered before the upgrade is still
resolved by the events that match it, whether they came before the upgrade or after.

Each test builds a store as an older version left it (its migrations applied and recorded, and
rows as that version wrote them), then lets the current store migrate it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import psycopg

from dataflows.records import EventIntake, IntakeResult, Lease, WaitMatch
from dataflows.store.keys import canonical
from dataflows.store.queries import load_migrations
from dataflows.store.sqlite import sqlite_path
from tests.pg import DbTarget
from tests.store.builders import LEASE, T0, event, running, send, wait_for
from tests.store.conftest import new_store

Rows = list[tuple[str, list[tuple[Any, ...]]]]

_RUNS = (
    "INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,"
    " created_at, updated_at, wake_at, wait_reason, lease_token)"
    " VALUES (?, 'wf', ?, ?, 'order/created', '{}', ?, ?, ?, NULL, ?, 1)"
)
_WAITS = (
    "INSERT INTO waits (run_id, step_key, kind, wake_at, event_name, filter_paths,"
    " filter_key, created_at) VALUES (?, 'ok', 'wait', NULL, 'approval/decided', ?, ?, ?)"
)
_SHAPES = "INSERT INTO wait_shapes (event_name, filter_paths) VALUES (?, ?)"

#: Rows as version 1 wrote them: r1 suspended on a wait for task 7; r2's wait for task 8 was
#: woken by the event "old" (version 1 only queued the run), and the upgrade came before the
#: worker replayed it. Filter paths and keys in version 1's text form.
_V1_ROWS: Rows = [
    (
        _RUNS,
        [
            ("r1", "waiting", "r1/trigger", T0, T0, T0 + 1, "event"),
            ("r2", "queued", "r2/trigger", T0, T0, T0 + 2, None),
        ],
    ),
    (_WAITS, [("r1", '["data.task"]', "[7]", T0 + 1), ("r2", '["data.task"]', "[8]", T0 + 1)]),
    (_SHAPES, [("approval/decided", '["data.task"]')]),
    (
        "INSERT INTO events (id, name, data, ts, received_at) VALUES (?, ?, ?{jsonb}, ?, ?)",
        [("old", "approval/decided", json.dumps({"task": 8}), T0 + 2, T0 + 2)],
    ),
]


def _install(target: DbTarget, version: int, rows: Rows) -> None:
    """Migrations 1 to ``version`` only, recorded in ``migrations`` as the store records them,
    plus ``rows``."""
    dialect = "sqlite" if target.kind == "sqlite" else "postgres"
    migrations = load_migrations(dialect)[:version]
    assert [v for v, _, _ in migrations] == list(range(1, version + 1))
    if target.kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(target.url))
        try:
            conn.execute(
                "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at REAL NOT NULL)"
            )
            for number, name, script in migrations:
                conn.executescript(script)
                conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (number, name, time.time()))
            for sql, values in rows:
                conn.executemany(sql.replace("{jsonb}", ""), values)
            conn.commit()
        finally:
            conn.close()
        return
    assert target.schema is not None
    with (
        psycopg.connect(
            target.url, autocommit=True, options=f"-c search_path={target.schema}"
        ) as pg,
        pg.transaction(),
    ):
        pg.execute(
            "CREATE TABLE migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at double precision NOT NULL)"
        )
        for number, name, script in migrations:
            pg.execute(script.encode(), prepare=False)
            pg.execute("INSERT INTO migrations VALUES (%s, %s, %s)", (number, name, time.time()))
        with pg.cursor() as cur:
            for sql, values in rows:
                cur.executemany(sql.replace("{jsonb}", "::jsonb").replace("?", "%s"), values)


async def test_waits_pending_at_the_upgrade_are_resolved(db: DbTarget) -> None:
    _install(db, 1, _V1_ROWS)
    s = new_store(db)
    await s.open(migrate=False)
    try:
        assert await s.migrate() == [
            "0002_wait_after_seq",
            "0003_intake_function",
            "0004_eager_claim",
            "0005_resumed_runs",
            "0006_wait_keys_in_sql",
            "0007_worker_liveness",
            "0008_webhook_bodies",
            "0009_schedules",
            "0010_cancellation",
            "0011_step_budgets",
            "0012_flow_control",
            "0013_throttle_debounce",
            "0014_budget_line",
            "0015_cancel_on_wakes",
            "0016_run_versions",
            "0017_lean_claim_intake",
            "0018_webhook_rejections",
            "0019_worker_offers",
            "0020_start_function",
        ]
        before = await s.get_run("r1")
        assert before is not None and before.status == "waiting"
        assert [(x.key, x.status) for x in before.steps] == [("ok", "waiting")]

        # An event for the version-1 wait, stored by the upgraded store: recorded at intake.
        await send(s, "e1", "approval/decided", {"task": 7}, T0 + 3)
        after = await s.get_run("r1")
        assert after is not None and after.status == "queued"
        assert [(x.key, x.status, x.event_id) for x in after.steps] == [("ok", "completed", "e1")]
        assert after.steps[0].output == {
            "id": "e1",
            "name": "approval/decided",
            "data": {"task": 7},
            "ts": T0 + 3,
        }

        # r2's event came under version 1: the replay's re-check finds it (the wait was
        # registered before the sequence numbers were kept, so its search starts at 0).
        claimed = {c.id: c for c in await s.claim_runs("w1", 5, LEASE, T0 + 4)}
        assert sorted(claimed) == ["r1", "r2"]
        match7 = WaitMatch("approval/decided", (("data.task", 7),))
        match8 = WaitMatch("approval/decided", (("data.task", 8),))
        got = await wait_for(s, claimed["r2"], "ok", match8, T0 + 5)
        assert got.state == "resolved" and got.event is not None and got.event.id == "old"
        got = await wait_for(s, claimed["r1"], "ok", match7, T0 + 5)
        assert got.state == "resolved" and got.event is not None and got.event.id == "e1"
    finally:
        await s.close()


#: Waits pending at the upgrade to version 6, by run: filter paths and values. Version 5 stored
#: their keys as the engine's canonical JSON text (sorted members, no spaces, integral floats as
#: integers, non-ASCII characters escaped).
_V5_WAITS: dict[str, tuple[list[str], list[Any]]] = {
    "float": (["data.n"], [1.0]),
    "int": (["data.n"], [2]),
    "nested": (["data.order"], [{"lines": [{"sku": "a", "qty": 2.0}], "id": 9}]),
    "unicode": (["data.who"], ["Zoë ☃ 東京"]),
    "two": (["data.n", "data.who"], [3, "é"]),
}


def _v5_rows() -> Rows:
    runs = [
        (run_id, "waiting", f"{run_id}/trigger", T0, T0, T0 + 1, "event") for run_id in _V5_WAITS
    ]
    waits = [
        (run_id, json.dumps(paths), canonical(values), T0 + 1)
        for run_id, (paths, values) in _V5_WAITS.items()
    ]
    shapes = sorted({("approval/decided", json.dumps(paths)) for paths, _ in _V5_WAITS.values()})
    return [(_RUNS, runs), (_WAITS, waits), (_SHAPES, shapes)]


async def test_waits_pending_at_the_upgrade_to_keys_made_in_sql_are_resolved(
    db: DbTarget,
) -> None:
    """Keys of every kind of value: 1.0 and 1, objects whose members come in another order
    (nested, with floats inside), non-ASCII text; a wait reached after the upgrade with the same
    filter shares its key with the older one."""
    _install(db, 5, _v5_rows())
    s = new_store(db)
    await s.open(migrate=False)
    try:
        assert await s.migrate() == [
            "0006_wait_keys_in_sql",
            "0007_worker_liveness",
            "0008_webhook_bodies",
            "0009_schedules",
            "0010_cancellation",
            "0011_step_budgets",
            "0012_flow_control",
            "0013_throttle_debounce",
            "0014_budget_line",
            "0015_cancel_on_wakes",
            "0016_run_versions",
            "0017_lean_claim_intake",
            "0018_webhook_rejections",
            "0019_worker_offers",
            "0020_start_function",
        ]
        [late] = await running(s, "late", now=T0 + 2)
        same_as_float = WaitMatch("approval/decided", (("data.n", 1),))
        assert (await wait_for(s, late, "ok", same_as_float, T0 + 2)).state == "pending"
        assert await s.suspend_run(Lease("late", late.lease_token), None, "event", T0 + 2)

        decided: list[tuple[str, dict[str, Any]]] = [
            ("e-float", {"n": 1}),  # an integer for the wait on 1.0
            ("e-int", {"n": 2.0}),  # a float for the wait on 2
            ("e-nested", {"order": {"id": 9.0, "lines": [{"qty": 2, "sku": "a"}]}}),
            ("e-unicode", {"who": "Zoë ☃ 東京"}),
            ("e-two", {"who": "é", "n": 3.0}),
        ]
        sent = await s.send_events(
            [EventIntake(event(event_id, "approval/decided", data)) for event_id, data in decided],
            T0 + 3,
        )
        assert sent.results == [
            IntakeResult("e-float", (), False, ("float", "late")),
            IntakeResult("e-int", (), False, ("int",)),
            IntakeResult("e-nested", (), False, ("nested",)),
            IntakeResult("e-unicode", (), False, ("unicode",)),
            IntakeResult("e-two", (), False, ("two",)),
        ]
        recorded = {run_id: f"e-{run_id}" for run_id in _V5_WAITS} | {"late": "e-float"}
        for run_id, event_id in recorded.items():
            row = await s.get_run(run_id)
            assert row is not None and row.status == "queued", run_id
            assert [(w.status, w.event_id) for w in row.steps] == [("completed", event_id)]
    finally:
        await s.close()
