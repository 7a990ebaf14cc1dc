"""``POST /hooks/{source}``: a provider's webhook, verified on its raw bytes, stored as an event.

Verification comes first and sees the body exactly as sent, whatever its content type. A delivery
becomes the event ``"{source}:{delivery_id}"``, so a provider's redelivery is deduplicated by the
store and answered with the same ids. For a source that signs the body but not the delivery id
(``replay_window`` set), the body's SHA-256 goes with the event: the same body within the window
is a duplicate of its first event even under a new delivery id. 202 means the event, the runs it
starts and the waits it resolves are committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dataflows import metrics
from dataflows.errors import WebhookError, WebhookInvalid, WebhookUnauthorized
from dataflows.http.body import read_body
from dataflows.http.context import ApiContext, context
from dataflows.http.errors import ApiError, as_api_error
from dataflows.http.events import sent_answer
from dataflows.http.responses import JsonResponse
from dataflows.http.strict_json import check_json
from dataflows.names import MAX_NAME_LENGTH, check_sent_event_name
from dataflows.records import BodyKey, WebhookRejection
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest

__all__ = [
    "REJECTIONS_KEPT",
    "REJECTED_BODY_BYTES",
    "body_key",
    "delivery_event_id",
    "receive_webhook",
]

#: Refused deliveries kept (the newest), and the largest body kept with one, in bytes.
REJECTIONS_KEPT = 1000
REJECTED_BODY_BYTES = 4096

logger = logging.getLogger("dataflows.http")

#: What a source may raise on a malformed (but possibly authentic) request instead of the
#: documented webhook errors: answered as a client error, never a 500.
_SOURCE_INPUT_ERRORS = (ValueError, LookupError, TypeError, RecursionError)


async def receive_webhook(request: Request) -> Response:
    ctx = context(request)
    name: str = request.path_params["source"]
    body: bytes | None = None
    try:
        source = ctx.sources().get(name)
        if source is None:
            raise ApiError(404, "unknown_source", f"no webhook source {name!r} is enabled")
        body = await read_body(request, ctx.max_body_bytes)
        hook = WebhookRequest(request.headers, body, request.query_params)
        _verify(source, name, hook, ctx.app.clock.now())
        answer = _handshake(source, hook)
        if answer is not None:
            return JsonResponse(answer, status_code=200)
        event = _parse(source, hook)
    except (ApiError, WebhookError) as exc:
        await _record_rejection(request, name, body, exc)
        raise
    event_id = delivery_event_id(name, event.delivery_id)
    sent = await ctx.store(
        ctx.app.send(event.name, event.data, id=event_id, body=body_key(source, name, body))
    )
    answer = sent_answer(sent)
    return JsonResponse({"event_id": answer.pop("id"), **answer}, status_code=202)


async def _record_rejection(
    request: Request, name: str, body: bytes | None, exc: ApiError | WebhookError
) -> None:
    """Keep the refused delivery for the dashboard: its source, status and reason, and its body
    only when small (never a header: signatures and tokens travel there). Best effort, in the
    background: the answer does not wait for it, and a database that does not answer costs the
    record, not the answer."""
    error = as_api_error(exc)
    if error is None or error.status >= 500:
        return
    ctx = context(request)
    size = None if body is None else len(body)
    kept = None
    if body is not None and size is not None and size <= REJECTED_BODY_BYTES:
        kept = body.decode("utf-8", "replace")
    rejection = WebhookRejection(
        0, name[:200], error.status, str(error)[:500], kept, size, ctx.app.clock.now()
    )
    if len(_RECORDING) >= MAX_RECORDING:  # a flood of bad deliveries: keep up, record fewer
        return
    task = asyncio.ensure_future(_record(ctx, name, rejection))
    _RECORDING.add(task)
    task.add_done_callback(_RECORDING.discard)


#: Records of refused deliveries being written (in the background: the answer does not wait).
_RECORDING: set[asyncio.Future[None]] = set()
MAX_RECORDING = 16


async def _record(ctx: ApiContext, name: str, rejection: WebhookRejection) -> None:
    try:
        await ctx.store(ctx.app.open())
        await ctx.store(ctx.app.store.record_webhook_rejection(rejection, REJECTIONS_KEPT))
    except Exception as failure:  # noqa: BLE001 - nobody waits for this record
        logger.warning("could not record a refused %r webhook: %r", name, failure)


def delivery_event_id(source: str, delivery_id: str) -> str:
    """``"{source}:{delivery_id}"``, hashed when that would pass the event id length limit."""
    event_id = f"{source}:{delivery_id}"
    if len(event_id) <= MAX_NAME_LENGTH:
        return event_id
    digest = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{source[:100]}:sha256:{digest}"


def body_key(source: Source, name: str, body: bytes) -> BodyKey | None:
    """For a source that signs the body but not the delivery id, the body's key: the same body
    sent again within the source's replay window is a duplicate of its first event."""
    if source.replay_window is None:
        return None
    return BodyKey(name, hashlib.sha256(body).hexdigest(), source.replay_window)


def _verify(source: Source, name: str, hook: WebhookRequest, now: float) -> None:
    try:
        source.verify(hook, now)
    except WebhookUnauthorized:
        metrics.webhook_rejected(name)
        raise
    except _SOURCE_INPUT_ERRORS as exc:
        metrics.webhook_rejected(name)
        logger.warning("webhook source %r failed verifying a request: %r", name, exc)
        raise WebhookUnauthorized(f"the {name} request could not be verified") from exc


def _handshake(source: Source, hook: WebhookRequest) -> dict[str, Any] | None:
    try:
        answer = source.handshake(hook)
    except _SOURCE_INPUT_ERRORS as exc:
        raise _invalid(source, exc) from exc
    if answer is not None:
        check_json(answer, code="invalid_webhook")
    return answer


def _parse(source: Source, hook: WebhookRequest) -> WebhookEvent:
    try:
        event = source.parse(hook)
    except _SOURCE_INPUT_ERRORS as exc:
        raise _invalid(source, exc) from exc
    _check_event(event)
    return event


def _check_event(event: WebhookEvent) -> None:
    try:
        check_sent_event_name(event.name)
    except ValueError as exc:
        raise WebhookInvalid(str(exc)) from None
    if not isinstance(event.delivery_id, str) or not event.delivery_id:
        raise WebhookInvalid("the delivery has no delivery id")
    check_json(event.delivery_id, code="invalid_webhook")
    if not isinstance(event.data, dict):
        raise WebhookInvalid("the delivery's data is not a JSON object")
    check_json(event.data, code="invalid_webhook")


def _invalid(source: Source, exc: BaseException) -> WebhookInvalid:
    logger.warning("webhook source %r could not read a verified request: %r", source.name, exc)
    return WebhookInvalid(f"the {source.name} request is not a delivery it understands")
