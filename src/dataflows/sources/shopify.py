"""Shopify: every webhook is signed with the app's client secret.

``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body; ``X-Shopify-Topic`` names the
event (``orders/create``) and ``X-Shopify-Webhook-Id`` stays the same when Shopify redelivers.
Neither header is signed: the same body within ``replay_window`` (24 hours) is a duplicate of its
first event, whatever those headers say.
"""

from __future__ import annotations

import base64

from dataflows.sources.base import BodySignedSource, WebhookEvent, WebhookRequest
from dataflows.sources.payloads import json_object, required, webhook_event
from dataflows.sources.signing import as_bytes, check_signature, hmac_digest, require_header
from dataflows.sources.signing import header as get_header
from dataflows.workflow import EventTrigger, on_event

SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"


class ShopifySource(BodySignedSource):
    """``POST /hooks/shopify``: events ``shopify/{topic}``, e.g. ``shopify/orders/create``."""

    name = "shopify"

    def verify(self, request: WebhookRequest, now: float) -> None:
        presented = as_bytes(require_header(request, SIGNATURE_HEADER))
        expected = (base64.b64encode(hmac_digest(s, request.body)) for s in self.secrets)
        check_signature(expected, [presented], SIGNATURE_HEADER)

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        topic = required(get_header(request, "X-Shopify-Topic"), "X-Shopify-Topic header")
        delivery = required(
            get_header(request, "X-Shopify-Webhook-Id"), "X-Shopify-Webhook-Id header"
        )
        return webhook_event(self.name, topic, json_object(request.body), delivery)


def on(topic: str) -> EventTrigger:
    """Trigger on a Shopify topic: ``shopify.on("orders/create")``, ``shopify.on("orders/*")``."""
    return on_event(f"shopify/{topic}")
