"""``POST /hooks/{source}``: a provider's webhook, verified on its raw bytes, stored as an event.

Verification comes first and sees the body exactly as sent, whatever its content type. A delivery
becomes the event ``"{source}:{delivery_id}"``, so a provider's redelivery is deduplicated by the
store and answered with the same ids. For a source that signs the body but not the delivery id
(``replay_window`` set), the body's SHA-256 goes with the event: the same body within the window
is a duplicate of its first event even under a new delivery id. 202 means the event, the runs it
starts and the waits it resolves are committed.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dataflows import metrics
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.http.body import read_body
from dataflows.http.context import context
from dataflows.http.errors import ApiError
from dataflows.http.events import sent_answer
from dataflows.http.responses import JsonResponse
from dataflows.http.strict_json import check_json
from dataflows.names import MAX_NAME_LENGTH, check_sent_event_name
from dataflows.records import BodyKey
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest

__all__ = ["body_key", "delivery_event_id", "receive_webhook"]

logger = logging.getLogger("dataflows.http")

#: What a source may raise on a malformed (but possibly authentic) request instead of the
#: documented webhook errors: answered as a client error, never a 500.
_SOURCE_INPUT_ERRORS = (ValueError, LookupError, TypeError, RecursionError)


async def receive_webhook(request: Request) -> Response:
    ctx = context(request)
    name: str = request.path_params["source"]
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
    event_id = delivery_event_id(name, event.delivery_id)
    sent = await ctx.store(
        ctx.app.send(event.name, event.data, id=event_id, body=body_key(source, name, body))
    )
    answer = sent_answer(sent)
    return JsonResponse({"event_id": answer.pop("id"), **answer}, status_code=202)


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
        metrics.WEBHOOKS_REJECTED.labels(name).inc()
        raise
    except _SOURCE_INPUT_ERRORS as exc:
        metrics.WEBHOOKS_REJECTED.labels(name).inc()
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
