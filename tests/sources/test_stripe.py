from __future__ import annotations

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import StripeSource, stripe
from tests.sources import signed
from tests.sources.signed import NOW, body_of, hex_hmac, request, stripe_header

SECRET = "whsec_test_secret"
BODY = body_of({"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "invoice.paid", "data": {}})


def test_a_signed_event_verifies_and_parses() -> None:
    source = StripeSource(SECRET)
    req = signed.stripe(BODY, SECRET)
    source.verify(req, NOW)
    event = source.parse(req)
    assert (event.name, event.delivery_id) == (
        "stripe/invoice.paid",
        "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    )
    assert event.data["data"] == {}


def test_known_signature() -> None:
    # Stripe publishes no vector; this one is from
    # `printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test_secret`.
    v1 = "ceb8863f7208fa249a6cd8f951e993c7563412aca65866f6272283debe143ab3"
    assert hex_hmac(SECRET, b"1700000000.{}") == v1
    StripeSource(SECRET).verify(request(b"{}", {"stripe-signature": f"t=1700000000,v1={v1}"}), NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_five_minutes_either_way_verify(skew: int) -> None:
    StripeSource(SECRET).verify(signed.stripe(BODY, SECRET, NOW + skew), NOW)


@pytest.mark.parametrize(("skew", "message"), [(-301, "old"), (301, "future"), (-86400, "old")])
def test_stale_and_future_timestamps_are_refused(skew: int, message: str) -> None:
    with pytest.raises(WebhookUnauthorized, match=message):
        StripeSource(SECRET).verify(signed.stripe(BODY, SECRET, NOW + skew), NOW)


def test_the_tolerance_is_configurable() -> None:
    StripeSource(SECRET, tolerance=3600).verify(signed.stripe(BODY, SECRET, NOW - 3000), NOW)


def test_a_tampered_body_or_timestamp_is_refused() -> None:
    header = stripe_header(BODY, [SECRET])
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        StripeSource(SECRET).verify(request(BODY + b"\n", {"Stripe-Signature": header}), NOW)
    moved = header.replace(f"t={int(NOW)}", f"t={int(NOW) + 1}")
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        StripeSource(SECRET).verify(request(BODY, {"Stripe-Signature": moved}), NOW)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookUnauthorized):
        StripeSource(SECRET).verify(signed.stripe(BODY, "whsec_other"), NOW)


def test_any_of_several_v1_signatures_may_match() -> None:
    # Stripe sends one v1 per active secret while a secret is rolled; v0 is a test-mode extra.
    header = stripe_header(BODY, ["whsec_other", SECRET]) + ",v0=deadbeef"
    StripeSource(SECRET).verify(request(BODY, {"Stripe-Signature": header}), NOW)
    spaced = header.replace(",", ", ")
    StripeSource(SECRET).verify(request(BODY, {"Stripe-Signature": spaced}), NOW)


def test_rotation_accepts_every_configured_secret() -> None:
    source = StripeSource("whsec_old,whsec_new")
    source.verify(signed.stripe(BODY, "whsec_old"), NOW)
    source.verify(signed.stripe(BODY, "whsec_new"), NOW)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Stripe-Signature"),
        ("garbage", "one 't='"),
        ("v1=abc", "one 't='"),
        (f"t={int(NOW)},t={int(NOW)},v1=abc", "one 't='"),
        (f"t={int(NOW)}", "no 'v1='"),
        (f"t={int(NOW)},v0=abc", "no 'v1='"),
        ("t=soon,v1=abc", "malformed Stripe-Signature timestamp"),
        (f"t={int(NOW)}.5,v1=abc", "malformed"),
    ],
)
def test_malformed_headers_are_refused(header: str | None, message: str) -> None:
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(WebhookUnauthorized, match=message):
        StripeSource(SECRET).verify(request(BODY, headers), NOW)


@pytest.mark.parametrize(
    "data", [{"type": "invoice.paid"}, {"id": "evt_1"}, {"id": 5, "type": "invoice.paid"}]
)
def test_parse_needs_id_and_type(data: dict[str, object]) -> None:
    with pytest.raises(WebhookInvalid):
        StripeSource(SECRET).parse(signed.stripe(body_of(data), SECRET))


def test_trigger_helper() -> None:
    assert stripe.on("invoice.paid") == EventTrigger("stripe/invoice.paid")
    assert stripe.on("invoice.*").matches("stripe/invoice.payment_failed")
