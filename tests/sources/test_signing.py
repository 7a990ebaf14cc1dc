"""The helpers every source shares: header lookup, constant-time matching, timestamps, bodies."""

from __future__ import annotations

import pytest

from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources.payloads import form_fields, json_object, webhook_event
from dataflows.sources.signing import check_timestamp, header, matches_any, require_header
from tests.sources.signed import request


def test_headers_match_case_insensitively() -> None:
    req = request(b"", {"x-shopify-topic": "orders/create"})
    assert header(req, "X-Shopify-Topic") == "orders/create"
    assert header(req, "X-Missing") is None


def test_a_missing_or_blank_header_is_unauthorized() -> None:
    with pytest.raises(WebhookUnauthorized, match="missing X-Signature header"):
        require_header(request(b"", {}), "X-Signature")
    with pytest.raises(WebhookUnauthorized, match="missing X-Signature header"):
        require_header(request(b"", {"X-Signature": "  "}), "X-Signature")


def test_matches_any_pair() -> None:
    assert matches_any([b"a", b"b"], [b"x", b"b"])
    assert not matches_any([b"a", b"b"], [b"x", b"bb"])
    assert not matches_any([], [b"a"])
    assert not matches_any([b"a"], [])


@pytest.mark.parametrize("value", ["", "abc", "+100", " 100", "100.5", "1_000", "١٠٠", "9" * 13])
def test_malformed_timestamps_are_unauthorized(value: str) -> None:
    with pytest.raises(WebhookUnauthorized, match="malformed"):
        check_timestamp(value, 100.0, 300, "X-Timestamp")


def test_timestamps_are_accepted_within_tolerance_both_ways() -> None:
    assert check_timestamp("1000", 1300.0, 300, "t") == 1000
    assert check_timestamp("1600", 1300.0, 300, "t") == 1600
    with pytest.raises(WebhookUnauthorized, match="old"):
        check_timestamp("999", 1300.0, 300, "t")
    with pytest.raises(WebhookUnauthorized, match="future"):
        check_timestamp("1601", 1300.0, 300, "t")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff{}", "UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b"[1]", "must be a JSON object"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ],
)
def test_bad_json_bodies_are_invalid(body: bytes, message: str) -> None:
    with pytest.raises(WebhookInvalid, match=message):
        json_object(body)


def test_forms_must_be_utf8() -> None:
    assert form_fields(b"a=1&b=&a=2") == {"a": "2", "b": ""}
    with pytest.raises(WebhookInvalid):
        form_fields(b"a=%ff")


@pytest.mark.parametrize(
    ("name", "delivery"),
    [("", "d"), ("x" * 200, "d"), ("a\nb", "d"), ("ok", ""), ("ok", "x" * 200), ("ok", "a\x00")],
)
def test_events_the_store_would_refuse_are_invalid(name: str, delivery: str) -> None:
    with pytest.raises(WebhookInvalid):
        webhook_event("github", name, {}, delivery)


def test_event_names_and_ids_fit_the_store() -> None:
    event = webhook_event("github", "x" * 192, {"a": 1}, "d" * 193)
    assert event.name == "github/" + "x" * 192
    assert len(f"github:{event.delivery_id}") == 200
