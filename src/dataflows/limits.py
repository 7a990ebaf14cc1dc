"""Run-level flow control: how many runs of a workflow execute at once, and in which order.

The options are checked when the workflow is registered and evaluated at intake, when a run is
created: its concurrency key and its priority are stored on the run, and the store's claim
enforces the limit (see ``claim_runs`` in each dialect's SQL), so it holds across every worker
process on every machine. A workflow without these options stores NULL and 0 and is claimed as
before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataflows.durations import Duration, parse_duration
from dataflows.models import Event

#: A key: a dotted path into the triggering event (``"data.customer_id"``, ``"name"``) or a
#: function of the event. A path that leads nowhere, or a function answering ``None``, gives "".
KeyExpr = str | Callable[[Event], Any]
#: A run's priority: a number, or a function of the triggering event answering one. Higher first.
PriorityExpr = int | Callable[[Event], int]

#: How long a workflow's ``idempotency`` key holds: a second run with the key within it is not
#: started.
IDEMPOTENCY_WINDOW = 24 * 3600.0

#: Priorities are stored as 32-bit integers; values beyond are clamped to this range.
MAX_PRIORITY = 2**31 - 1
#: The stored concurrency of a workflow with a throttle and no concurrency limit: none.
MAX_LIMIT = 2**31 - 1

_PATH = re.compile(r"^(id|name|ts|data(\.[^.\s]+)+)$")


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` runs of the workflow execute at once, per value of ``key`` (the whole
    workflow without one). A run that sleeps, waits for an event or backs off before a retry
    holds no slot; runs over the limit stay ``queued`` and start by priority, then age."""

    limit: int
    key: KeyExpr | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` runs of the workflow start per ``period`` (a duration) per value of
    ``key``: an event that would start one more starts none, and its send result says so."""

    limit: int
    period: Duration
    key: KeyExpr | None = None


@dataclass(frozen=True, slots=True)
class Throttle:
    """At most ``limit`` runs of the workflow start (are first claimed) within any ``period`` (a
    duration) per value of ``key``: runs over it stay ``queued`` and start, oldest first, as
    the window frees. None is dropped."""

    limit: int
    period: Duration
    key: KeyExpr | None = None


def check_throttle(
    workflow_id: str, value: Throttle | None, concurrency: Concurrency | None
) -> float | None:
    """The throttle's period in seconds, the option checked (``None`` without one)."""
    if value is None:
        return None
    if not isinstance(value, Throttle):
        raise ValueError(
            f"workflow {workflow_id!r}: throttle={value!r} is invalid: expected df.Throttle"
        )
    check_limit(workflow_id, "throttle", value.limit)
    period = check_duration(workflow_id, "throttle period", value.period)
    if value.key is not None:
        check_key(workflow_id, "throttle", value.key)
    if concurrency is not None and concurrency.key != value.key:
        # Both limits are counted per the one key a run stores.
        raise ValueError(
            f"workflow {workflow_id!r}: throttle key={value.key!r} is invalid: with concurrency "
            f"it must be the concurrency key ({concurrency.key!r})"
        )
    return period


@dataclass(frozen=True, slots=True)
class Debounce:
    """Events with the same ``key`` within ``period`` of each other start one run, with the
    last one's data, ``period`` after the last (never later than ``max_wait`` after the
    first, when given)."""

    period: Duration
    key: KeyExpr | None = None
    max_wait: Duration | None = None


def check_debounce(workflow_id: str, value: Debounce | None) -> tuple[float, float | None] | None:
    """The debounce's period and max_wait in seconds, the option checked (``None`` without)."""
    if value is None:
        return None
    if not isinstance(value, Debounce):
        raise ValueError(
            f"workflow {workflow_id!r}: debounce={value!r} is invalid: expected df.Debounce"
        )
    period = check_duration(workflow_id, "debounce period", value.period)
    max_wait = (
        None
        if value.max_wait is None
        else check_duration(workflow_id, "debounce max_wait", value.max_wait)
    )
    if value.key is not None:
        check_key(workflow_id, "debounce", value.key)
    return period, max_wait


def check_duration(workflow_id: str, option: str, given: Duration) -> float:
    """A duration option in seconds, above 0: else ``ValueError`` naming the workflow and the
    option (``"start_timeout"``, ``"throttle period"`` …)."""
    try:
        seconds = parse_duration(given)
    except ValueError as exc:
        raise ValueError(
            f"workflow {workflow_id!r}: {option}={given!r} is invalid: {exc}"
        ) from None
    if seconds <= 0:
        raise ValueError(f"workflow {workflow_id!r}: {option}={given!r} is invalid: must be > 0")
    return seconds


def check_rate_limit(workflow_id: str, value: RateLimit | None) -> float | None:
    """The rate limit's period in seconds, the option checked (``None`` without one)."""
    if value is None:
        return None
    if not isinstance(value, RateLimit):
        raise ValueError(
            f"workflow {workflow_id!r}: rate_limit={value!r} is invalid: expected df.RateLimit"
        )
    check_limit(workflow_id, "rate_limit", value.limit)
    period = check_duration(workflow_id, "rate_limit period", value.period)
    if value.key is not None:
        check_key(workflow_id, "rate_limit", value.key)
    return period


def check_key(workflow_id: str, option: str, key: object) -> None:
    """``ValueError`` naming the workflow and the option unless ``key`` is a key expression."""
    if callable(key):
        return
    if not isinstance(key, str) or not _PATH.match(key):
        raise ValueError(
            f"workflow {workflow_id!r}: {option} key={key!r} is invalid: expected a dotted path "
            "into the event ('data.customer_id') or a function of the event"
        )


def check_limit(workflow_id: str, option: str, limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(
            f"workflow {workflow_id!r}: {option} limit={limit!r} is invalid: expected an "
            "integer greater than 0"
        )


def coerce_concurrency(workflow_id: str, value: Concurrency | int | None) -> Concurrency | None:
    """The checked concurrency option: ``5`` means ``Concurrency(limit=5)``."""
    if value is None:
        return None
    if not isinstance(value, Concurrency):
        value = Concurrency(value)  # the limit is checked just below
    check_limit(workflow_id, "concurrency", value.limit)
    if value.key is not None:
        check_key(workflow_id, "concurrency", value.key)
    return value


def check_priority(workflow_id: str, value: object) -> None:
    if value is None or callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"workflow {workflow_id!r}: priority={value!r} is invalid: expected an integer or "
            "a function of the event"
        )


def key_value(key: KeyExpr | None, event: Event) -> str:
    """The key of ``event``: "" when the key is absent or its value is missing or ``None``."""
    if key is None:
        return ""
    value = key(event) if callable(key) else _follow(event, key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def priority_value(priority: PriorityExpr | None, event: Event | None) -> int:
    """The priority of a run started by ``event`` (needed only when ``priority`` is a function)."""
    if priority is None:
        return 0
    if callable(priority):
        if event is None:
            raise TypeError("a priority function needs the event")
        value: object = priority(event)
    else:
        value = priority
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"priority must be an integer, got {value!r}")
    return max(-MAX_PRIORITY, min(MAX_PRIORITY, int(value)))


def _follow(event: Event, path: str) -> Any:
    head, *rest = path.split(".")
    node: Any = {
        "id": event.id,
        "name": event.name,
        "ts": event.ts.isoformat(),
        "data": event.data,
    }[head]
    for part in rest:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
