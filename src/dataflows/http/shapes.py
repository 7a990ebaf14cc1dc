"""Request shapes, checked by hand: each rule here is also written in the OpenAPI document.

Anything that parses as JSON but breaks a rule is a 422 ``invalid_request`` naming the problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataflows.http.errors import ApiError
from dataflows.names import MAX_NAME_LENGTH, check_sent_event_name
from dataflows.records import RUN_STATUSES

__all__ = [
    "CURSOR_PATTERN",
    "DEFAULT_LIMIT",
    "MAX_EVENTS",
    "MAX_ID_LENGTH",
    "MAX_LIMIT",
    "NAME_PATTERN",
    "EventIn",
    "RunsQuery",
    "encode_cursor",
    "events_in",
    "is_valid_id",
    "run_start_in",
    "runs_query",
]

#: Event names over HTTP: printable ASCII only (the engine's own rule, which also refuses names
#: under the reserved ``dataflows/`` prefix, allows any printable character).
NAME_PATTERN = rf"^[ -~]{{1,{MAX_NAME_LENGTH}}}$"
#: Event ids, idempotency keys and the ids in paths and filters.
MAX_ID_LENGTH = MAX_NAME_LENGTH
MAX_EVENTS = 1000
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: ``{created_at}~{run_id}``: a position in the newest-first listing. Clients pass it back as is.
CURSOR_PATTERN = (
    rf"^-?[0-9]{{1,16}}(\.[0-9]{{1,20}})?(e[+-]?[0-9]{{1,2}})?~[^\x00]{{1,{MAX_NAME_LENGTH}}}$"
)


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


# -- bodies ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventIn:
    name: str
    data: dict[str, Any]
    id: str | None


def events_in(body: Any) -> list[EventIn]:
    """``POST /events``: one event object, or a list of 1 to :data:`MAX_EVENTS` of them."""
    if isinstance(body, dict):
        return [_event_in(body, "the event")]
    if not isinstance(body, list):
        raise _invalid("send an event object or a list of them")
    if not 0 < len(body) <= MAX_EVENTS:
        raise _invalid(f"send 1 to {MAX_EVENTS} events, not {len(body)}")
    return [_event_in(item, f"event [{i}]") for i, item in enumerate(body)]


def _event_in(value: Any, where: str) -> EventIn:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be an object")
    _no_unknown_fields(value, {"name", "data", "id"}, where)
    return EventIn(
        _event_name(value.get("name"), where),
        _data(value, where),
        _optional_id(value, "id", where),
    )


def _event_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise _invalid(f"{where}: name must be 1 to {MAX_NAME_LENGTH} printable ASCII characters")
    try:
        return check_sent_event_name(name)
    except ValueError as exc:
        raise _invalid(f"{where}: {exc}") from None


def run_start_in(body: Any) -> tuple[dict[str, Any], str | None]:
    """``POST /workflows/{id}/runs``: ``{"data"?: object, "idempotency_key"?: str}`` or no body."""
    if body is None:
        return {}, None
    if not isinstance(body, dict):
        raise _invalid("send an object {data, idempotency_key}")
    _no_unknown_fields(body, {"data", "idempotency_key"}, "the body")
    return _data(body, "the body"), _optional_id(body, "idempotency_key", "the body")


def _data(value: dict[str, Any], where: str) -> dict[str, Any]:
    data = value.get("data", {})
    if not isinstance(data, dict):
        raise _invalid(f"{where}: data must be an object")
    return data


def _optional_id(value: dict[str, Any], key: str, where: str) -> str | None:
    if key not in value:
        return None
    given = value[key]
    if not isinstance(given, str) or not 0 < len(given) <= MAX_ID_LENGTH:
        raise _invalid(f"{where}: {key} must be a string of 1 to {MAX_ID_LENGTH} characters")
    return given


def _no_unknown_fields(value: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise _invalid(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")


# -- identifiers and queries -----------------------------------------------------------------------


def is_valid_id(value: str) -> bool:
    """Whether ``value`` could name a stored run or event (so is worth looking up)."""
    return 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value and value.isprintable()


@dataclass(frozen=True, slots=True)
class RunsQuery:
    workflow_id: str | None
    status: str | None
    limit: int
    before: tuple[float, str] | None


_RUNS_PARAMS = frozenset({"workflow_id", "status", "limit", "cursor"})


def runs_query(params: Mapping[str, str]) -> RunsQuery:
    """``GET /runs`` query parameters; an unknown one is refused (a typo must not widen a filter)."""
    unknown = sorted(set(params) - _RUNS_PARAMS)
    if unknown:
        raise _invalid(f"unknown query parameter(s) {', '.join(map(repr, unknown))}")
    workflow_id = params.get("workflow_id")
    if workflow_id is not None and not _is_filter_text(workflow_id):
        raise _invalid(f"workflow_id must be 1 to {MAX_ID_LENGTH} characters without NUL")
    status = params.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise _invalid(f"status must be one of {', '.join(RUN_STATUSES)}")
    cursor = params.get("cursor")
    return RunsQuery(
        workflow_id,
        status,
        _limit(params.get("limit")),
        None if cursor is None else _decode_cursor(cursor),
    )


def _is_filter_text(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 0 < int(text) <= MAX_LIMIT:
        raise _invalid(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def encode_cursor(created_at: float, run_id: str) -> str:
    # repr round-trips a float exactly, so the next page starts exactly after this run.
    return f"{created_at!r}~{run_id}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise _invalid("invalid cursor: pass back a next_cursor unchanged")
    position, _, run_id = cursor.partition("~")
    created_at = float(position)
    if not math.isfinite(created_at):  # pragma: no cover - the pattern bounds the exponent
        raise _invalid("invalid cursor: pass back a next_cursor unchanged")
    return created_at, run_id


# -- bulk cancel -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancelFilters:
    workflow_id: str | None
    status: list[str] | None
    created_after: datetime | None
    created_before: datetime | None


def cancel_filters_in(body: Any) -> CancelFilters:
    """``POST /runs/cancel``: ``{"workflow_id"?, "status"?, "created_after"?, "created_before"?}``
    (``status`` one status or a list; the times ISO 8601 with a UTC offset). At least one filter,
    else 400: an empty body must not cancel everything."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _invalid("send an object {workflow_id, status, created_after, created_before}")
    _no_unknown_fields(
        body, {"workflow_id", "status", "created_after", "created_before"}, "the body"
    )
    if not any(body.get(k) is not None for k in body):
        raise ApiError(
            400,
            "bad_request",
            "give at least one filter: workflow_id, status, created_after or created_before",
        )
    workflow_id = body.get("workflow_id")
    if workflow_id is not None and not (
        isinstance(workflow_id, str) and _is_filter_text(workflow_id)
    ):
        raise _invalid(f"workflow_id must be 1 to {MAX_ID_LENGTH} characters without NUL")
    status = body.get("status")
    statuses = [status] if isinstance(status, str) else status
    if statuses is not None and (
        not isinstance(statuses, list)
        or not statuses
        or not all(s in ("queued", "running", "waiting") for s in statuses)
    ):
        raise _invalid("status must be queued, running or waiting, or a list of them")
    return CancelFilters(
        workflow_id,
        statuses,
        _time(body.get("created_after"), "created_after"),
        _time(body.get("created_before"), "created_before"),
    )


def _time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{key} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if when.tzinfo is None:
        raise _invalid(f"{key} must have a UTC offset (e.g. Z or +02:00)")
    return when
