"""Signed requests as each provider sends them, for the source tests (and anyone else's)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from dataflows.sources import WebhookRequest

#: The time the tests pretend it is (Unix seconds).
NOW = 1_700_000_000.0


def request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(headers=headers, body=body, query={})


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def b64_hmac(secret: str, message: bytes, algorithm: str = "sha256") -> str:
    digest = hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()
    return base64.b64encode(digest).decode()


def shopify(
    body: bytes, secret: str, topic: str = "orders/create", webhook_id: str = "b54557e4"
) -> WebhookRequest:
    return request(
        body,
        {
            "X-Shopify-Hmac-Sha256": b64_hmac(secret, body),
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Shop-Domain": "example.myshopify.com",
        },
    )


def github(
    body: bytes, secret: str, event: str = "push", delivery: str = "72d3162e-cc78-11e3"
) -> WebhookRequest:
    return request(
        body,
        {
            "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
        },
    )


def stripe_header(body: bytes, secrets: list[str], timestamp: float = NOW) -> str:
    t = str(int(timestamp))
    signed = t.encode() + b"." + body
    return ",".join([f"t={t}", *(f"v1={hex_hmac(s, signed)}" for s in secrets)])


def stripe(body: bytes, secret: str, timestamp: float = NOW) -> WebhookRequest:
    return request(body, {"Stripe-Signature": stripe_header(body, [secret], timestamp)})


def slack(body: bytes, secret: str, timestamp: float = NOW) -> WebhookRequest:
    t = str(int(timestamp))
    signature = "v0=" + hex_hmac(secret, b"v0:" + t.encode() + b":" + body)
    return request(body, {"X-Slack-Request-Timestamp": t, "X-Slack-Signature": signature})


def azure_devops(body: bytes, credentials: str) -> WebhookRequest:
    token = base64.b64encode(credentials.encode()).decode()
    return request(body, {"Authorization": f"Basic {token}"})


def generic(body: bytes, secret: str, **headers: str) -> WebhookRequest:
    return request(body, {"X-Signature": hex_hmac(secret, body), **headers})
