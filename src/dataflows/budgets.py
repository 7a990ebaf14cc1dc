"""Shared step budgets: how many calls ``step.run(..., rate_limit=name)`` may make per period.

A budget is declared on the app (``app.rate_limit("clickup", limit=100, period="1m")``) and kept
in the database as a sliding log of grants per ``(budget, key)``: a step takes one unit when at
most ``limit - 1`` grants of the same key were taken in the last ``period``, so no window of
``period`` ever holds more than ``limit`` grants, whichever workers took them. What a key is
comes from the triggering event: a dotted path into it (``"data.token"``) or a callable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataflows.durations import Duration, parse_duration
from dataflows.errors import InvalidDuration
from dataflows.names import MAX_NAME_LENGTH
from dataflows.records import lookup

#: What keys a budget: a dotted path into the triggering event (``"data.token"``), or a callable
#: given the event (a :class:`dataflows.Event`) that returns the key.
KeyExpr = str | Callable[[Any], object]

#: ``rate_limit=`` of ``step.run``: a budget's name, or its name and a key expression.
RateLimit = str | tuple[str, KeyExpr]


@dataclass(frozen=True, slots=True)
class Budget:
    """``limit`` units per sliding ``period`` (seconds), per key."""

    name: str
    limit: int
    period: float


def make_budget(name: object, limit: object, period: Duration) -> Budget:
    """Check a declaration; ``ValueError`` naming the budget and the option at fault."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError(
            f"rate_limit name={name!r} is invalid: a printable string of 1 to "
            f"{MAX_NAME_LENGTH} characters"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"rate_limit {name!r}: limit={limit!r} is invalid: an int of at least 1")
    try:
        seconds = parse_duration(period)
    except InvalidDuration:
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(
            f"rate_limit {name!r}: period={period!r} is invalid: a duration above zero "
            "('1s', '1m', seconds, a timedelta)"
        )
    return Budget(name, limit, seconds)


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """What one ``step.run`` asks of a budget: its name and how its key is found."""

    budget: Budget
    key: KeyExpr | None

    def key_for(self, data: dict[str, Any], event: Callable[[], Any]) -> str:
        """The key for a run whose triggering event has ``data`` (``event()`` builds the event
        for a callable). A key that evaluates to nothing (a missing field, ``None``) is ``""``; one longer than
        :data:`~dataflows.names.MAX_NAME_LENGTH` is replaced by its SHA-256 digest."""
        if self.key is None:
            return ""
        value = lookup(data, self.key)[1] if isinstance(self.key, str) else self.key(event())
        return _key_text(value, self.budget.name)


def parse_rate_limit(value: object, step: str, budgets: dict[str, Budget]) -> BudgetUse:
    """Check ``rate_limit=`` of step ``step``; the error names the step and the budget."""
    if isinstance(value, tuple) and len(value) == 2:
        name, key = value
        if isinstance(key, str):
            if not key.startswith("data.") or len(key) < 6:
                raise ValueError(
                    f"step {step!r}: rate_limit key {key!r} is invalid: use 'data.field', "
                    "'data.a.b' or a callable (event) -> str"
                )
        elif not callable(key):
            raise ValueError(
                f"step {step!r}: rate_limit key {key!r} is invalid: use 'data.field' or a "
                "callable (event) -> str"
            )
    elif isinstance(value, str):
        name, key = value, None
    else:
        raise ValueError(
            f"step {step!r}: rate_limit={value!r} is invalid: a budget name, or (name, key)"
        )
    budget = budgets.get(name) if isinstance(name, str) else None
    if budget is None:
        raise ValueError(
            f"step {step!r}: rate_limit budget {name!r} is not declared "
            f"(declare it with app.rate_limit({name!r}, limit=..., period=...))"
        )
    return BudgetUse(budget, key)


def _key_text(value: object, budget: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        raise ValueError(
            f"rate_limit {budget!r}: the key must be a string, a number or nothing, got {value!r}"
        )
    if len(text) > MAX_NAME_LENGTH:  # a long token: its digest keys it as well
        import hashlib

        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def wait_reason(budget: str, key: str, step_key: str) -> str:
    """Why a run waits for a unit of a budget (``runs show``): ``rate_limit api/k (step)``."""
    return f"rate_limit {budget}/{key} ({step_key})"
