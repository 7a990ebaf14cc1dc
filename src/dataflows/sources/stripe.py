"""Stripe: events signed with the endpoint's signing secret (``whsec_...``).

``Stripe-Signature: t=1700000000,v1=<hex>[,v1=<hex>...]``: each ``v1`` is the hex HMAC-SHA256 of
``{t}.{raw body}``. Stripe sends one ``v1`` per active secret while a secret is being rolled, so
any of them may match. The timestamp must be within ``tolerance`` seconds of now, in either
direction, so a captured request cannot be replayed later. The delivery id is the event's ``id``
(``evt_...``), which Stripe keeps on every retry.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataflows.errors import WebhookUnauthorized
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from dataflows.sources.payloads import json_object, text_field, webhook_event
from dataflows.sources.signing import (
    as_bytes,
    check_signature,
    check_timestamp,
    hmac_digest,
    require_header,
)
from dataflows.workflow import EventTrigger, on_event

SIGNATURE_HEADER = "Stripe-Signature"

#: Seconds a signature's timestamp may be away from now (Stripe's libraries default to 300).
DEFAULT_TOLERANCE = 300.0


class StripeSource(Source):
    """``POST /hooks/stripe``: events ``stripe/{type}``, e.g. ``stripe/invoice.paid``."""

    name = "stripe"

    def __init__(
        self, secrets: str | Sequence[str], *, tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        super().__init__(secrets)
        self.tolerance = tolerance

    def verify(self, request: WebhookRequest, now: float) -> None:
        timestamp, signatures = _signature_header(require_header(request, SIGNATURE_HEADER))
        check_timestamp(timestamp, now, self.tolerance, f"{SIGNATURE_HEADER} timestamp")
        signed = timestamp.encode() + b"." + request.body
        expected = (hmac_digest(s, signed).hex().encode() for s in self.secrets)
        check_signature(expected, [as_bytes(s.lower()) for s in signatures], SIGNATURE_HEADER)

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        data = json_object(request.body)
        return webhook_event(self.name, text_field(data, "type"), data, text_field(data, "id"))


def _signature_header(value: str) -> tuple[str, list[str]]:
    """The timestamp and the ``v1`` signatures of a ``Stripe-Signature`` header."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, _, text = item.strip().partition("=")
        if key == "t":
            timestamps.append(text.strip())
        elif key == "v1":
            signatures.append(text.strip())
    if len(timestamps) != 1:
        raise WebhookUnauthorized(f"malformed {SIGNATURE_HEADER} header: expected one 't='")
    if not signatures:
        raise WebhookUnauthorized(f"malformed {SIGNATURE_HEADER} header: no 'v1=' signature")
    return timestamps[0], signatures


def on(event_type: str) -> EventTrigger:
    """Trigger on a Stripe event type: ``stripe.on("invoice.paid")``, ``stripe.on("invoice.*")``."""
    return on_event(f"stripe/{event_type}")
