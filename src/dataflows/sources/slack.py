"""Slack: Events API, slash commands and interactivity, signed with the app's signing secret.

``X-Slack-Signature`` is ``v0=`` and the hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw
body}``; the timestamp must be within ``tolerance`` seconds of now, in either direction.

Event names:

- Events API (JSON): ``slack/event_callback.{event.type}`` (``slack/event_callback.app_mention``),
  so a workflow can listen to one kind of event; other envelopes are ``slack/{type}``
  (``slack/app_rate_limited``). The ``url_verification`` challenge is answered as a handshake.
- Slash commands (form): ``slack/command``; the data is the form's fields.
- Interactivity (form with a JSON ``payload``): ``slack/{payload.type}`` (``slack/block_actions``,
  ``slack/view_submission``, ``slack/shortcut``); the data is the payload.

Delivery id: Events API envelopes carry ``event_id``, which Slack keeps when it retries (a retry
is signed anew, with a new timestamp); everything else uses ``{timestamp}:{signature}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from dataflows.errors import WebhookInvalid
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from dataflows.sources.payloads import (
    form_fields,
    json_object,
    looks_like_json,
    text_field,
    webhook_event,
)
from dataflows.sources.signing import (
    as_bytes,
    check_signature,
    check_timestamp,
    hmac_digest,
    require_header,
    strip_prefix,
)
from dataflows.workflow import EventTrigger, on_event

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"

#: Slack's documented replay window: five minutes.
DEFAULT_TOLERANCE = 300.0


class SlackSource(Source):
    """``POST /hooks/slack``: ``slack/event_callback.{event type}``, ``slack/command``,
    ``slack/{interaction type}``."""

    name = "slack"

    def __init__(
        self, secrets: str | Sequence[str], *, tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        super().__init__(secrets)
        self.tolerance = tolerance

    def verify(self, request: WebhookRequest, now: float) -> None:
        timestamp = require_header(request, TIMESTAMP_HEADER)
        signature = require_header(request, SIGNATURE_HEADER)
        presented = as_bytes(strip_prefix(signature, "v0=", SIGNATURE_HEADER).lower())
        check_timestamp(timestamp, now, self.tolerance, TIMESTAMP_HEADER)
        signed = b"v0:" + timestamp.encode() + b":" + request.body
        expected = (hmac_digest(s, signed).hex().encode() for s in self.secrets)
        check_signature(expected, [presented], SIGNATURE_HEADER)

    def handshake(self, request: WebhookRequest) -> dict[str, Any] | None:
        # A body that does not parse is no handshake; parse() says what is wrong with it.
        with contextlib.suppress(WebhookInvalid):
            if looks_like_json(request.body):
                data = json_object(request.body)
                if data.get("type") == "url_verification" and isinstance(
                    data.get("challenge"), str
                ):
                    return {"challenge": data["challenge"]}
            elif form_fields(request.body).get("ssl_check") == "1":
                return {}
        return None

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        fallback_id = _request_id(request)
        if looks_like_json(request.body):
            data = json_object(request.body)
            name, delivery = _events_api_name(data), data.get("event_id")
            if not isinstance(delivery, str) or not delivery:
                delivery = fallback_id
            return webhook_event(self.name, name, data, delivery)
        fields = form_fields(request.body)
        if "payload" in fields:
            payload = json_object(fields["payload"], "the 'payload' field")
            return webhook_event(self.name, text_field(payload, "type"), payload, fallback_id)
        if "command" in fields:
            return webhook_event(self.name, "command", dict(fields), fallback_id)
        raise WebhookInvalid("the form is neither a slash command nor an interaction payload")


def _request_id(request: WebhookRequest) -> str:
    """The delivery id for requests without ``event_id``: the signed timestamp and signature."""
    timestamp = require_header(request, TIMESTAMP_HEADER)
    return f"{timestamp}:{require_header(request, SIGNATURE_HEADER)}"


def _events_api_name(data: dict[str, Any]) -> str:
    kind = text_field(data, "type")
    event = data.get("event")
    inner = event.get("type") if isinstance(event, dict) else None
    if kind == "event_callback" and isinstance(inner, str) and inner:
        return f"{kind}.{inner}"
    return kind


def on(name: str) -> EventTrigger:
    """Trigger on ``slack/{name}``: ``slack.on("command")``, ``slack.on("block_actions")``,
    ``slack.on("event_callback.*")`` (every Events API event)."""
    return on_event(f"slack/{name}")


def on_event_callback(event_type: str) -> EventTrigger:
    """Trigger on an Events API event type: ``slack.on_event_callback("app_mention")``."""
    return on(f"event_callback.{event_type}")


def on_command() -> EventTrigger:
    """Trigger on every slash command (``event.data["command"]`` says which)."""
    return on("command")
