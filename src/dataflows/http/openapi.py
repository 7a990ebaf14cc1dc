"""The API's OpenAPI 3.1 document, written by hand to say exactly what the routes accept.

Every rule of :mod:`shapes` and :mod:`strict_json` that a schema can express is here, so a
client generated from this document (or a fuzzer such as schemathesis) sends what is accepted.
"""

from __future__ import annotations

from typing import Any

from dataflows.approvals import MAX_COMMENT_LENGTH, MAX_TOKEN_LENGTH
from dataflows.http.shapes import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_EVENTS,
    MAX_ID_LENGTH,
    MAX_LIMIT,
    NAME_PATTERN,
)
from dataflows.names import INTERNAL_PREFIX, MAX_NAME_LENGTH
from dataflows.records import RUN_STATUSES, STEP_STATUSES
from dataflows.schedules import CATCH_UP_MODES

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_NO_NUL = r"^[^\x00]*$"
_ID_PATTERN = rf"^[^\x00]{{1,{MAX_ID_LENGTH}}}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_TIME = {"type": "string", "format": "date-time"}
_LIMIT = {"type": "integer", "minimum": 1}
_SECONDS = {"type": "number", "exclusiveMinimum": 0}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}


def _object(properties: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    names = list(properties) if required is None else required
    return {
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": False,
    }


_SKIPPED: Schema = {
    "type": "array",
    "description": "Workflows the event triggers whose run it did not start, and why (e.g. "
    "'idempotency KEY': a run of the workflow with that key started within 24 hours).",
    "items": _object({"workflow_id": {"type": "string"}, "reason": {"type": "string"}}),
}


def _ids(description: str) -> Schema:
    return {"type": "array", "items": {"type": "string"}, "description": description}


_RESUMED = "The runs whose wait_for_event this event resolved (none for a duplicate)."
_DUPLICATE = "The event id was already stored: nothing was written."

_SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string", "description": "Stable; see the error table."},
                    "message": {"type": "string"},
                }
            )
        }
    ),
    # Any JSON value a request may carry: no NUL in strings (nor lone surrogates, which a JSON
    # Schema cannot say), no NaN or infinities, at most 64 levels of nesting.
    "JsonValue": {
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", "pattern": _NO_NUL},
            {"type": "array", "items": _ref("JsonValue")},
            _ref("JsonObject"),
        ]
    },
    "JsonObject": {
        "type": "object",
        "propertyNames": {"pattern": _NO_NUL},
        "additionalProperties": _ref("JsonValue"),
    },
    "EventIn": _object(
        {
            "name": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": f"1-{MAX_NAME_LENGTH} printable ASCII characters, not starting "
                f"with {INTERNAL_PREFIX!r} (reserved).",
                "examples": ["approval/decided"],
            },
            "data": {**_ref("JsonObject"), "description": "Default {}."},
            "id": {
                "type": "string",
                "pattern": _ID_PATTERN,
                "description": "Deduplication key: an id already stored is not stored again.",
            },
        },
        required=["name"],
    ),
    "EventsIn": {
        "oneOf": [
            _ref("EventIn"),
            {"type": "array", "items": _ref("EventIn"), "minItems": 1, "maxItems": MAX_EVENTS},
        ]
    },
    "EventSent": _object(
        {
            "id": {"type": "string"},
            "run_ids": _ids("The runs this event started (a duplicate: the first delivery's)."),
            "resumed_run_ids": _ids(_RESUMED),
            "duplicate": {"type": "boolean", "description": _DUPLICATE},
            "skipped": _SKIPPED,
        }
    ),
    "EventsSent": _object(
        {
            "ids": _ids("One event id per event, in the order sent."),
            "run_ids": _ids("Every run the events started."),
            "resumed_run_ids": _ids("Every run whose wait_for_event one of the events resolved."),
            "events": {"type": "array", "items": _ref("EventSent")},
        }
    ),
    "WebhookAccepted": _object(
        {
            "event_id": {"type": "string"},
            "run_ids": _ids("The runs this delivery started (a duplicate: the first one's)."),
            "resumed_run_ids": _ids(_RESUMED),
            "duplicate": {"type": "boolean", "description": _DUPLICATE},
            "skipped": _SKIPPED,
        }
    ),
    "RunStart": _object(
        {
            "data": {**_ref("JsonObject"), "description": "Default {}."},
            "idempotency_key": {
                "type": "string",
                "pattern": _ID_PATTERN,
                "description": "The same key for the same workflow starts one run only.",
            },
        },
        required=[],
    ),
    "RunStarted": _object({"run_id": {"type": "string"}}),
    "RunsCancel": {
        **_object(
            {
                "workflow_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LENGTH,
                    "pattern": _NO_NUL,
                },
                "status": {
                    "oneOf": [
                        {"type": "string", "enum": ["queued", "running", "waiting"]},
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": ["queued", "running", "waiting"]},
                            "minItems": 1,
                        },
                    ],
                    "description": "Default: all three.",
                },
                "created_after": {
                    "type": "string",
                    "format": "date-time",
                    "description": "Runs created at or after this time (ISO 8601, with an offset).",
                },
                "created_before": {
                    "type": "string",
                    "format": "date-time",
                    "description": "Runs created before this time (ISO 8601, with an offset).",
                },
            },
            required=[],
        ),
        "minProperties": 1,
        "description": "At least one filter; the runs matching all of them are cancelled.",
    },
    "RunsCancelled": _object(
        {
            "cancelled": {
                "type": "integer",
                "minimum": 0,
                "description": "Matching runs cancelled (their children not counted).",
            }
        }
    ),
    "RunStateChanged": _object(
        {"run_id": {"type": "string"}, "status": {"type": "string", "enum": list(RUN_STATUSES)}}
    ),
    "Trigger": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "event or cron"},
            "event": {"type": "string", "description": "An event trigger's name."},
            "expr": {"type": "string", "description": "A cron trigger's expression."},
            "tz": {"type": "string", "description": "A cron trigger's IANA time zone."},
            "catch_up": {"type": "string", "enum": list(CATCH_UP_MODES)},
        },
        "required": ["type"],
    },
    "Schedule": _object(
        {
            "id": {"type": "string", "description": "<workflow id>:<n>, its n-th cron trigger."},
            "workflow_id": {"type": "string"},
            "expr": {"type": "string", "examples": ["0 9 * * 1-5", "@hourly"]},
            "tz": {"type": "string", "examples": ["Europe/Berlin"]},
            "catch_up": {"type": "string", "enum": list(CATCH_UP_MODES)},
            "next_at": {
                **_OPTIONAL_TIME,
                "description": "When it fires next; null while paused.",
            },
            "paused": {"type": "boolean"},
        }
    ),
    "Schedules": _object({"schedules": {"type": "array", "items": _ref("Schedule")}}),
    "Workflow": _object(
        {
            "id": {"type": "string"},
            "triggers": {"type": "array", "items": _ref("Trigger")},
            "retries": _object(
                {
                    "retries": {"type": "integer"},
                    "initial_seconds": {"type": "number"},
                    "factor": {"type": "number"},
                    "maximum_seconds": {"type": "number"},
                    "jitter": {"type": "number"},
                }
            ),
            "timeout_seconds": {"type": ["number", "null"]},
            "version": {
                "type": "string",
                "description": "The version runs started now record (version= or a "
                "fingerprint of the function's code).",
            },
            "cancel_on": {
                "type": "array",
                "items": _ref("CancelTrigger"),
                "description": "Events that cancel the workflow's unfinished runs.",
            },
            "concurrency": {
                "oneOf": [
                    {"type": "null"},
                    _object({"limit": _LIMIT, "key": _ref("LimitKey")}),
                ],
                "description": "At most limit runs execute at once per key; null: no limit.",
            },
            "throttle": {
                "oneOf": [
                    {"type": "null"},
                    _object({"limit": _LIMIT, "period_seconds": _SECONDS, "key": _ref("LimitKey")}),
                ],
                "description": "At most limit runs start per key within any period; null: none.",
            },
            "rate_limit": {
                "oneOf": [
                    {"type": "null"},
                    _object({"limit": _LIMIT, "period_seconds": _SECONDS, "key": _ref("LimitKey")}),
                ],
                "description": "At most limit runs are created per key within any period (events "
                "over it start none); null: none.",
            },
            "debounce": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "period_seconds": _SECONDS,
                            "key": _ref("LimitKey"),
                            "max_wait_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        }
                    ),
                ],
                "description": "Events of one key within period of each other start one run; "
                "null: none.",
            },
            "priority": {
                "oneOf": [{"type": "null"}, {"type": "integer"}, _ref("Callable")],
                "description": "The priority of its runs (higher start first): a constant, or "
                "computed by a function of the event; null: not set (0).",
            },
            "idempotency": {
                "oneOf": [{"type": "null"}, {"type": "string"}, _ref("Callable")],
                "description": "At most one run per value of this key within 24 hours: a dotted "
                "path into the event or a function of it; null: not set.",
            },
            "start_timeout_seconds": {
                "type": ["number", "null"],
                "description": "A run not started this long after its creation is cancelled.",
            },
        }
    ),
    "LimitKey": {
        "oneOf": [{"type": "null"}, {"type": "string"}, _ref("Callable")],
        "description": "A dotted path into the triggering event (data.customer_id), a function "
        "of the event, or null: one limit for the whole workflow.",
    },
    "Callable": _object(
        {
            "callable": {
                "type": "string",
                "description": "The function's module and qualified name "
                "(myapp.flows.<lambda> for a lambda).",
            }
        }
    ),
    "CancelTrigger": _object(
        {
            "type": {"type": "string", "enum": ["event"]},
            "event": {"type": "string", "description": "The name of the event that cancels."},
            "match": {
                "type": ["string", "null"],
                "description": "A dotted path (data.id): the event cancels the runs whose "
                "triggering event has the same value there; null: every unfinished run.",
            },
        }
    ),
    "Workflows": _object({"workflows": {"type": "array", "items": _ref("Workflow")}}),
    "RunEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "ts": _TIME,
            "data": {"type": "object"},
        },
        "required": ["id", "name", "ts"],
        "additionalProperties": False,
    },
    "RunSummary": _object(
        {
            "id": {"type": "string"},
            "workflow_id": {"type": "string"},
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "wait_reason": {"type": ["string", "null"]},
            "event": _ref("RunEvent"),
            "error": {"type": ["object", "null"]},
            "created_at": _TIME,
            "updated_at": _TIME,
            "completed_at": _OPTIONAL_TIME,
            "wake_at": _OPTIONAL_TIME,
            "recoveries": {"type": "integer"},
            "parent_run_id": {"type": ["string", "null"]},
            "version": {
                "type": ["string", "null"],
                "description": "The version of the code the run started with: the workflow's "
                "version= or a fingerprint of its function's code; null until its first "
                "attempt.",
            },
        }
    ),
    "Step": _object(
        {
            "key": {"type": "string", "description": "Unique in the run: name, name#2, ..."},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["run", "sleep", "wait", "send", "invoke"]},
            "status": {"type": "string", "enum": list(STEP_STATUSES)},
            "attempts": {"type": "integer"},
            "output": {},
            "error": {"type": ["object", "null"]},
            "started_at": _OPTIONAL_TIME,
            "completed_at": _OPTIONAL_TIME,
            "wake_at": _OPTIONAL_TIME,
            "duration_seconds": {"type": ["number", "null"]},
            "attempt_errors": {
                "type": "array",
                "items": _ref("AttemptError"),
                "description": "Every failed attempt of the step, oldest first.",
            },
        }
    ),
    "AttemptError": _object(
        {
            "attempt": {"type": "integer", "minimum": 1},
            "error": {"type": "object"},
            "started_at": _OPTIONAL_TIME,
            "failed_at": _OPTIONAL_TIME,
            "retry_at": {
                **_OPTIONAL_TIME,
                "description": "When the next attempt could start; null for the last one.",
            },
        }
    ),
    "Runs": _object(
        {
            "runs": {"type": "array", "items": _ref("RunSummary")},
            "next_cursor": {"type": ["string", "null"]},
        }
    ),
    "Status": _object({"status": {"type": "string"}}),
    "PendingApproval": _object(
        {
            "id": {"type": "string", "description": "The approval's id."},
            "run_id": {"type": "string"},
            "workflow_id": {"type": "string"},
            "step": {"type": "string", "description": "The request_approval step's key."},
            "title": {"type": "string"},
            "approvers": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Who may decide (empty: anyone with the link).",
            },
            "created_at": _TIME,
            "expires_at": _TIME,
        }
    ),
    "Approvals": _object({"approvals": {"type": "array", "items": _ref("PendingApproval")}}),
    "ApprovalDecision": {
        **_object(
            {
                "csrf": {"type": "string", "description": "The page's CSRF token."},
                "decision": {"type": "string", "enum": ["approve", "reject"]},
                "comment": {"type": "string", "maxLength": MAX_COMMENT_LENGTH},
            },
            required=["csrf", "decision"],
        ),
    },
}
_SCHEMAS["RunDetail"] = {
    **_SCHEMAS["RunSummary"],
    "properties": {
        **_SCHEMAS["RunSummary"]["properties"],
        "result": {},
        "steps": {"type": "array", "items": _ref("Step")},
    },
    "required": [*_SCHEMAS["RunSummary"]["required"], "result", "steps"],
}

_SCHEMAS["RunExport"] = _object(
    {
        "format": {"type": "string", "enum": ["dataflows.history/1"]},
        "run": _object(
            {
                "id": {"type": "string"},
                "workflow_id": {"type": "string"},
                "status": {"type": "string", "enum": list(RUN_STATUSES)},
                "created_at": {"type": "number", "description": "Seconds since the epoch."},
                "version": {"type": ["string", "null"]},
            }
        ),
        "event": _object(
            {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "data": {"type": "object"},
                "ts": {"type": "number"},
            }
        ),
        "steps": {
            "type": "array",
            "description": "As recorded, in recording order, the engine's own rows (cancel_on "
            "watches, step.patched answers) included.",
            "items": _object(
                {
                    "key": {"type": "string"},
                    "kind": {"type": "string"},
                    "status": {"type": "string"},
                    "output": {},
                    "error": {"type": ["object", "null"]},
                    "attempts": {"type": "integer"},
                    "started_at": {"type": ["number", "null"]},
                    "completed_at": {"type": ["number", "null"]},
                    "wake_at": {"type": ["number", "null"]},
                    "event_id": {"type": ["string", "null"]},
                }
            ),
        },
    }
)

_ERRORS: dict[int, str] = {
    400: "Malformed JSON (invalid_json), request (bad_request) or HTTP (malformed_request).",
    401: "Missing or invalid credentials (unauthorized) or webhook signature (invalid_signature).",
    404: "Unknown source, workflow, run, schedule or path.",
    409: "The run is not in a state the operation applies to (invalid_run_state).",
    413: "Body over the limit (body_too_large) or event data over the payload cap.",
    415: "JSON routes need Content-Type: application/json (UTF-8).",
    422: "Valid JSON of the wrong shape (invalid_request), or an unreadable delivery.",
    503: "The database is unreachable (store_unavailable); retry after Retry-After seconds.",
}


def _error(status: int) -> Schema:
    response: Schema = {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if status == 503:
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}, "required": True}}
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "required": False}
        }
    return response


def _ok(status: int, schema: str, description: str) -> dict[str, Schema]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": _ref(schema)}},
        }
    }


_PAGE_ANSWERS = {
    200: "The page.",
    400: "A form that cannot be read, or without a decision.",
    401: "The request names approvers: sign in (Authorization: Bearer name:key).",
    403: "A tampered link, a POST without a valid CSRF token, or not one of the approvers.",
    404: "Not an approval link, or no such approval.",
    409: "Already decided: a link works once.",
    410: "The link expired, or its run no longer waits.",
    413: "A form over 16 KiB.",
    415: "Not a form (application/x-www-form-urlencoded).",
    503: "Approvals are not set up (no secret key), or the database did not answer.",
}


def _pages(*statuses: int) -> dict[str, Schema]:
    """HTML answers: a page for every outcome, never JSON."""
    return {
        str(status): {
            "description": _PAGE_ANSWERS[status],
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
        for status in statuses
    }


def _path_param(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _json_body(schema: str, *, required: bool = True) -> Schema:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _operation(
    op_id: str,
    summary: str,
    responses: dict[str, Schema],
    errors: tuple[int, ...],
    **extra: Any,
) -> Schema:
    return {
        "operationId": op_id,
        "summary": summary,
        "responses": {**responses, **{str(s): _error(s) for s in errors}},
        **extra,
    }


_RUN_ID = _path_param("run_id", "The run's id.")
_TOKEN = {
    **_path_param("token", "The signed link token."),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_LENGTH},
}
_SCHEDULE_ID = _path_param("schedule_id", "The schedule's id, <workflow id>:<n> (may hold /).")
_RUNS_QUERY = [
    {
        "name": "workflow_id",
        "in": "query",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "pattern": _NO_NUL,
        },
    },
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(RUN_STATUSES)}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "The next_cursor of the previous page, unchanged.",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
    },
]
_WEBHOOK_BODY = {
    "required": False,
    "description": "The provider's request exactly as sent; the source verifies the raw bytes.",
    "content": {
        "application/json": {"schema": {}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_OPEN: dict[str, Any] = {"security": []}


def _paths(auth: tuple[int, ...]) -> dict[str, Schema]:
    store = (503,)
    return {
        "/hooks/{source}": {
            "post": _operation(
                "receiveWebhook",
                "Verify a provider's webhook, store its event, start the workflows it triggers.",
                {
                    **_ok(202, "WebhookAccepted", "Stored (or already stored) and committed."),
                    "200": {
                        "description": "A verified handshake (e.g. Slack URL verification).",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
                (401, 404, 413, 422, *store),
                parameters=[_path_param("source", "An enabled source: shopify, github ...")],
                requestBody=_WEBHOOK_BODY,
                **_OPEN,
            )
        },
        "/events": {
            "post": _operation(
                "sendEvents",
                "Send one event or a list of them, in one transaction.",
                _ok(202, "EventsSent", "Committed: the events, runs started, waits resolved."),
                (400, *auth, 413, 415, 422, *store),
                requestBody=_json_body("EventsIn"),
            )
        },
        "/workflows": {
            "get": _operation(
                "listWorkflows",
                "Registered workflows and their triggers.",
                _ok(200, "Workflows", "Every registered workflow."),
                auth,
            )
        },
        "/workflows/{workflow_id}/runs": {
            "post": _operation(
                "startRun",
                "Start a run of a workflow.",
                _ok(202, "RunStarted", "The run is committed."),
                (400, *auth, 404, 413, 415, 422, *store),
                parameters=[_path_param("workflow_id", "A registered workflow's id.")],
                requestBody=_json_body("RunStart", required=False),
            )
        },
        "/runs": {
            "get": _operation(
                "listRuns",
                "Runs, newest first, with cursor pagination.",
                _ok(200, "Runs", "A page of runs."),
                (*auth, 422, *store),
                parameters=_RUNS_QUERY,
            )
        },
        "/runs/cancel": {
            "post": _operation(
                "cancelRuns",
                "Cancel every unfinished run matching the filters (at least one), with the "
                "children each invoked, in batches.",
                _ok(200, "RunsCancelled", "The matching runs are cancelled."),
                (400, *auth, 413, 415, 422, *store),
                requestBody=_json_body("RunsCancel"),
            )
        },
        "/runs/{run_id}": {
            "get": _operation(
                "getRun",
                "A run with its steps.",
                _ok(200, "RunDetail", "The run."),
                (*auth, 404, *store),
                parameters=[_RUN_ID],
            )
        },
        "/runs/{run_id}/export": {
            "get": _operation(
                "exportRun",
                "A run's history as recorded, for dataflows.testing.replay: what "
                "`dataflows runs export` writes.",
                _ok(200, "RunExport", "The run's history."),
                (*auth, 404, *store),
                parameters=[_RUN_ID],
            )
        },
        "/runs/{run_id}/cancel": {
            "post": _operation(
                "cancelRun",
                "Cancel a run: it starts no further step.",
                _ok(202, "RunStateChanged", "The run is cancelled."),
                (*auth, 404, 409, *store),
                parameters=[_RUN_ID],
            )
        },
        "/runs/{run_id}/retry": {
            "post": _operation(
                "retryRun",
                "Run a failed or cancelled run again: recorded steps stay, failed steps rerun.",
                _ok(202, "RunStateChanged", "The run is queued again."),
                (*auth, 404, 409, *store),
                parameters=[_RUN_ID],
            )
        },
        "/schedules": {
            "get": _operation(
                "listSchedules",
                "The schedules (cron triggers) workers keep, with when each fires next.",
                _ok(200, "Schedules", "Every schedule, by id."),
                (*auth, *store),
            )
        },
        "/schedules/{schedule_id}/pause": {
            "post": _operation(
                "pauseSchedule",
                "Pause a schedule: it fires no tick until resumed, across deploys too.",
                _ok(200, "Schedule", "The schedule, paused."),
                (*auth, 404, *store),
                parameters=[_SCHEDULE_ID],
            )
        },
        "/schedules/{schedule_id}/resume": {
            "post": _operation(
                "resumeSchedule",
                "Resume a schedule from its next tick (those missed while paused are skipped).",
                _ok(200, "Schedule", "The schedule, firing again."),
                (*auth, 404, *store),
                parameters=[_SCHEDULE_ID],
            )
        },
        "/approvals": {
            "get": _operation(
                "listApprovals",
                "The approvals runs wait for now (step.wait_for_approval), oldest first.",
                _ok(200, "Approvals", "Pending approvals."),
                (*auth, 422, *store),
                parameters=[
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["pending"], "default": "pending"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                    },
                ],
            )
        },
        "/approvals/{token}": {
            "get": {
                "operationId": "approvalPage",
                "summary": "An approval link's confirmation page (HTML); it decides nothing.",
                "parameters": [_TOKEN],
                "responses": _pages(200, 401, 403, 404, 409, 410, 503),
                **_OPEN,
            },
            "post": {
                "operationId": "decideApproval",
                "summary": "Decide from the confirmation page (HTML form with its CSRF token).",
                "parameters": [_TOKEN],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": _ref("ApprovalDecision")}
                    },
                },
                "responses": _pages(200, 400, 401, 403, 404, 409, 410, 413, 415, 503),
                **_OPEN,
            },
        },
        "/static/{name}": {
            "get": {
                "operationId": "staticFile",
                "summary": "The stylesheet of the HTML pages.",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["dataflows.css"]},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {"text/css": {"schema": {"type": "string"}}},
                    },
                    "404": {
                        "description": "No such file.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
                **_OPEN,
            }
        },
        "/healthz": {
            "get": _operation(
                "liveness", "Liveness.", _ok(200, "Status", "The process serves."), (), **_OPEN
            )
        },
        "/readyz": {
            "get": _operation(
                "readiness",
                "Readiness: the database answers.",
                _ok(200, "Status", "Ready."),
                store,
                **_OPEN,
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics.",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                auth,
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document.",
                {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                auth,
            )
        },
    }


def openapi_document(*, secured: bool, version: str = "0.1.0") -> dict[str, Any]:
    """The document; ``secured`` when API keys are configured (bearer auth, 401 answers)."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "dataflows",
            "version": version,
            "description": "Durable workflows: send events, start and inspect runs.",
        },
        "paths": _paths((401,) if secured else ()),
        "components": {"schemas": _SCHEMAS},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
        document["security"] = [{"bearerAuth": []}]
    return document
