"""GitHub: webhooks signed with the webhook's secret.

``X-Hub-Signature-256`` is ``sha256=`` and the hex HMAC-SHA256 of the raw body. ``X-GitHub-Event``
names the event, the body's ``action`` (when there is one) refines it, and ``X-GitHub-Delivery``
stays the same when a delivery is redelivered. Neither header is signed: the same body within
``replay_window`` (24 hours) is a duplicate of its first event, whatever those headers say. The ``ping`` GitHub sends when a webhook is created
is answered as a handshake (200 ``{"ok": true}``) and stores no event.
"""

from __future__ import annotations

from typing import Any

from dataflows.sources.base import BodySignedSource, WebhookEvent, WebhookRequest
from dataflows.sources.payloads import (
    form_fields,
    json_object,
    looks_like_json,
    required,
    webhook_event,
)
from dataflows.sources.signing import (
    as_bytes,
    check_signature,
    hmac_digest,
    require_header,
    strip_prefix,
)
from dataflows.sources.signing import header as get_header
from dataflows.workflow import EventTrigger, on_event

SIGNATURE_HEADER = "X-Hub-Signature-256"


class GitHubSource(BodySignedSource):
    """``POST /hooks/github``: events ``github/{event}`` or ``github/{event}.{action}``,
    e.g. ``github/push``, ``github/pull_request.opened``."""

    name = "github"

    def verify(self, request: WebhookRequest, now: float) -> None:
        value = require_header(request, SIGNATURE_HEADER)
        presented = as_bytes(strip_prefix(value, "sha256=", SIGNATURE_HEADER).lower())
        expected = (hmac_digest(s, request.body).hex().encode() for s in self.secrets)
        check_signature(expected, [presented], SIGNATURE_HEADER)

    def handshake(self, request: WebhookRequest) -> dict[str, Any] | None:
        if get_header(request, "X-GitHub-Event") == "ping":
            return {"ok": True}
        return None

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        event = required(get_header(request, "X-GitHub-Event"), "X-GitHub-Event header")
        delivery = required(get_header(request, "X-GitHub-Delivery"), "X-GitHub-Delivery header")
        data = _payload(request.body)
        action = data.get("action")
        name = f"{event}.{action}" if isinstance(action, str) and action else event
        return webhook_event(self.name, name, data, delivery)


def _payload(body: bytes) -> dict[str, Any]:
    """The JSON payload, sent as the body or, for form webhooks, as the ``payload`` field."""
    if looks_like_json(body):
        return json_object(body)
    payload = form_fields(body).get("payload")
    return json_object(required(payload, "'payload' form field"), "the 'payload' field")


def on(event: str) -> EventTrigger:
    """Trigger on a GitHub event: ``github.on("push")``, ``github.on("pull_request.opened")``,
    ``github.on("pull_request.*")`` (every action)."""
    return on_event(f"github/{event}")
