"""Reading a verified request's body and building the event it becomes.

Only called after :meth:`Source.verify` passed. Everything a provider could get wrong (a body that
is not JSON, a missing field, an event name that could not be stored) becomes
:class:`WebhookInvalid`, never another exception.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from dataflows.errors import WebhookInvalid
from dataflows.names import MAX_NAME_LENGTH, is_event_name
from dataflows.sources.base import WebhookEvent


def _reject_constant(name: str) -> Any:
    raise WebhookInvalid(f"the body contains {name}, which is not JSON")


def looks_like_json(body: bytes) -> bool:
    """Whether the body is a JSON object rather than a form (a form cannot start with ``{``)."""
    return body.lstrip()[:1] == b"{"


def json_object(body: bytes | str, what: str = "the body") -> dict[str, Any]:
    """``body`` parsed as a UTF-8 JSON object."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise WebhookInvalid(f"{what} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise WebhookInvalid(f"{what} is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise WebhookInvalid(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise WebhookInvalid(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def form_fields(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; a repeated field keeps its last value."""
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookInvalid("the body is not a valid UTF-8 form") from None


def text_field(data: dict[str, Any], key: str) -> str:
    """The non-empty string ``data[key]``."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookInvalid(f"the body has no {key!r} string")
    return value


def required(value: str | None, what: str) -> str:
    """``value`` (a header or field a verified request must carry), non-empty."""
    if value is None or not value.strip():
        raise WebhookInvalid(f"missing {what}")
    return value.strip()


def webhook_event(source: str, name: str, data: dict[str, Any], delivery_id: str) -> WebhookEvent:
    """The event ``{source}/{name}``, checked so the store accepts its name and id."""
    full_name = f"{source}/{name}"
    if not name or not is_event_name(full_name):
        raise WebhookInvalid(f"cannot name an event {full_name[:MAX_NAME_LENGTH]!r}")
    room = MAX_NAME_LENGTH - len(source) - 1  # the stored id is f"{source}:{delivery_id}"
    if not 0 < len(delivery_id) <= room or not delivery_id.isprintable():
        raise WebhookInvalid(f"invalid delivery id {delivery_id[:room]!r}")
    return WebhookEvent(full_name, data, delivery_id)
