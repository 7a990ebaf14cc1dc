"""HTTP status codes and error bodies, assigned in this one place.

Every error answer is ``{"error": {"code": ..., "message": ...}}`` with a stable ``code``.
Exceptions map to answers here: the API's own :class:`ApiError`, the engine's errors, Starlette's
routing errors. Anything else is a bug: it is logged and answered ``500 internal_error``, never
with details. Bad input must never reach that branch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataflows.errors import (
    InvalidRunState,
    PayloadError,
    PayloadTooLarge,
    RunNotFound,
    ScheduleNotFound,
    StoreUnavailable,
    UnknownWorkflow,
    WebhookError,
    WebhookUnauthorized,
)
from dataflows.http.responses import JsonResponse

__all__ = [
    "RETRY_AFTER_SECONDS",
    "ApiError",
    "CatchAllMiddleware",
    "error_response",
    "handle_exception",
]

logger = logging.getLogger("dataflows.http")

#: What a 503 asks clients to wait before trying again.
RETRY_AFTER_SECONDS = 5

#: Engine errors and the status and code each is answered with (first match wins).
_ENGINE_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownWorkflow, 404, "unknown_workflow"),
    (RunNotFound, 404, "run_not_found"),
    (ScheduleNotFound, 404, "schedule_not_found"),
    (InvalidRunState, 409, "invalid_run_state"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (PayloadError, 422, "invalid_request"),
    (WebhookUnauthorized, 401, "invalid_signature"),
    (WebhookError, 422, "invalid_webhook"),
)

#: Starlette's own HTTP errors (routing): their codes.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    """An error answer: ``status``, a stable ``code``, a sentence, and extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(exc: Exception) -> Response:
    """The answer for ``exc``; unknown exceptions are logged and answered 500."""
    error = as_api_error(exc)
    if error is None:
        logger.error("unhandled error in the HTTP API", exc_info=exc)
        error = ApiError(500, "internal_error", "internal error; see the server log")
    if error.status == 503:
        error.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    body = {"error": {"code": error.code, "message": error.message}}
    return JsonResponse(body, status_code=error.status, headers=error.headers)


def as_api_error(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StoreUnavailable):
        # The driver's message names database hosts and ports: for the log, not for clients.
        logger.warning("answering 503: %s", exc)
        return ApiError(503, "store_unavailable", "the database is unreachable; retry later")
    for kind, status, code in _ENGINE_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc))
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, exc.detail, exc.headers)
    if isinstance(exc, ClientDisconnect):
        return ApiError(400, "bad_request", "the client disconnected before sending the body")
    return None


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: routes every registered exception type through here."""
    return error_response(exc)


class CatchAllMiddleware:
    """Answer any exception that escaped the routes (a bug) with a JSON 500, and log it.

    Starlette's outermost middleware would answer too, but then re-raise into the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:  # too late to answer: let the server close the connection
                raise
            await error_response(exc)(scope, receive, send)
