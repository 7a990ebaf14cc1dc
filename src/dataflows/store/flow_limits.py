"""Flow limits: the concurrency limits and throttles of the code, which the claim enforces.

Workers write them from their code as they start (:func:`sync_flow_limits`), as they write
schedules. A run carries its workflow's concurrency key from intake; the claim (``claim_runs``
in each dialect) reads the limit here when it takes such a run, so a limit changed in a deploy
applies to the runs already queued as soon as a worker of the new code starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dataflows.records import FlowLimit
from dataflows.store.program import Program, Query


def sync_flow_limits(limits: Sequence[FlowLimit], now: float) -> Program:
    """Make the stored limits those of the code: add and change them, delete the rest."""
    yield Query("lock_flow_limits", {}, "one")
    for limit in sorted(limits, key=lambda x: x.workflow_id):
        yield Query(
            "upsert_flow_limit",
            {
                "workflow_id": limit.workflow_id,
                "concurrency": limit.concurrency,
                "throttle": limit.throttle,
                "throttle_period": limit.throttle_period,
                "now": now,
            },
        )
    yield Query("delete_flow_limits_except", {"ids": json.dumps([x.workflow_id for x in limits])})


def held_counts() -> Program:
    """``(workflow_id, limit, count)`` of the runs a flow limit holds back now: ``limit`` is
    ``concurrency``, ``throttle`` (queued runs) or ``debounce`` (pending runs)."""
    rows = yield Query("held_counts", {}, "all")
    return [(row["workflow_id"], row["flow_limit"], int(row["count"])) for row in rows]


def list_flow_limits() -> Program:
    rows = yield Query("list_flow_limits", {}, "all")
    return [
        FlowLimit(row["workflow_id"], row["concurrency"], row["throttle"], row["throttle_period"])
        for row in rows
    ]
