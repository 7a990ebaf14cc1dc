from __future__ import annotations

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import ShopifySource, shopify
from tests.sources import signed
from tests.sources.signed import NOW, body_of, request

SECRET = "shpss_0123456789abcdef"
BODY = body_of({"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.00"})


def test_a_signed_delivery_verifies_and_parses() -> None:
    source = ShopifySource(SECRET)
    req = signed.shopify(BODY, SECRET, topic="orders/create", webhook_id="b54557e4-bdd9")
    source.verify(req, NOW)
    event = source.parse(req)
    assert event.name == "shopify/orders/create"
    assert event.delivery_id == "b54557e4-bdd9"
    assert event.data["id"] == 820982911946154508


def test_known_signature() -> None:
    # Shopify publishes no test vector; this one is from `openssl dgst -sha256 -hmac secret -binary | base64`.
    req = request(
        b'{"id":1}', {"x-shopify-hmac-sha256": "A971iWIMgT8Zj9A9eWfikrFj7wQ16/Qwcc4OlRl2PLc="}
    )
    ShopifySource("secret").verify(req, NOW)


def test_a_tampered_body_is_refused() -> None:
    req = signed.shopify(BODY, SECRET)
    forged = request(BODY.replace(b"199.00", b"1.00"), dict(req.headers))
    with pytest.raises(WebhookUnauthorized, match="X-Shopify-Hmac-Sha256 does not match"):
        ShopifySource(SECRET).verify(forged, NOW)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookUnauthorized):
        ShopifySource(SECRET).verify(signed.shopify(BODY, "another"), NOW)


@pytest.mark.parametrize("value", [None, "", "not base64!", "c2hvcnQ="])
def test_missing_or_malformed_signature_is_refused(value: str | None) -> None:
    headers = {"X-Shopify-Topic": "orders/create"}
    if value is not None:
        headers["X-Shopify-Hmac-Sha256"] = value
    with pytest.raises(WebhookUnauthorized):
        ShopifySource(SECRET).verify(request(BODY, headers), NOW)


def test_every_configured_secret_is_accepted() -> None:
    source = ShopifySource("old-secret, new-secret")
    assert source.secrets == ["old-secret", "new-secret"]
    for secret in ("old-secret", "new-secret"):
        source.verify(signed.shopify(BODY, secret), NOW)
    ShopifySource(["a", "b,c"]).verify(signed.shopify(BODY, "c"), NOW)


def test_a_source_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        ShopifySource(" , ")


@pytest.mark.parametrize("missing", ["X-Shopify-Topic", "X-Shopify-Webhook-Id"])
def test_parse_needs_topic_and_webhook_id(missing: str) -> None:
    req = signed.shopify(BODY, SECRET)
    headers = {k: v for k, v in req.headers.items() if k != missing}
    with pytest.raises(WebhookInvalid, match=missing):
        ShopifySource(SECRET).parse(request(BODY, headers))


def test_parse_needs_a_json_object() -> None:
    with pytest.raises(WebhookInvalid, match="JSON object"):
        ShopifySource(SECRET).parse(signed.shopify(b"[]", SECRET))


def test_trigger_helper() -> None:
    assert shopify.on("orders/create") == EventTrigger("shopify/orders/create")
    assert shopify.on("orders/*").matches("shopify/orders/paid")
