from __future__ import annotations

import hashlib
import hmac

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import GenericSource, generic
from tests.sources import signed
from tests.sources.signed import NOW, b64_hmac, body_of, request

SECRET = "generic-secret"
BODY = body_of({"type": "invoice.created", "meta": {"id": "msg_1", "seq": 7}})


def test_defaults_hex_sha256_in_x_signature() -> None:
    source = GenericSource("generic", SECRET)
    req = signed.generic(BODY, SECRET, **{"X-Event-Type": "order.paid", "X-Webhook-Id": "w-1"})
    source.verify(req, NOW)
    event = source.parse(req)
    assert (event.name, event.delivery_id) == ("generic/order.paid", "w-1")
    assert event.data["meta"] == {"id": "msg_1", "seq": 7}


def test_without_event_or_id_the_defaults_apply_and_each_request_gets_a_fresh_id() -> None:
    source = GenericSource("generic", SECRET)
    first, second = (source.parse(signed.generic(BODY, SECRET)) for _ in range(2))
    assert first.name == second.name == "generic/webhook"
    assert first.delivery_id != second.delivery_id


def test_a_tampered_body_or_wrong_secret_is_refused() -> None:
    source = GenericSource("generic", SECRET)
    req = signed.generic(BODY, SECRET)
    with pytest.raises(WebhookUnauthorized, match="X-Signature does not match"):
        source.verify(request(BODY + b" ", dict(req.headers)), NOW)
    with pytest.raises(WebhookUnauthorized):
        source.verify(signed.generic(BODY, "other"), NOW)
    with pytest.raises(WebhookUnauthorized, match="missing X-Signature"):
        source.verify(request(BODY, {}), NOW)


def test_rotation_accepts_every_secret() -> None:
    source = GenericSource("generic", "one,two")
    source.verify(signed.generic(BODY, "one"), NOW)
    source.verify(signed.generic(BODY, "two"), NOW)


def test_base64_sha512_with_a_prefix_and_body_fields() -> None:
    source = GenericSource(
        "acme",
        SECRET,
        header="X-Acme-Signature",
        algorithm="sha512",
        encoding="base64",
        prefix="sha512=",
        id_header=None,
        id_field="meta.id",
        event_header=None,
        event_field="type",
        default_event=None,
    )
    req = request(BODY, {"x-acme-signature": "sha512=" + b64_hmac(SECRET, BODY, "sha512")})
    source.verify(req, NOW)
    event = source.parse(req)
    assert (event.name, event.delivery_id) == ("acme/invoice.created", "msg_1")
    with pytest.raises(WebhookUnauthorized, match="start with 'sha512='"):
        source.verify(request(BODY, {"X-Acme-Signature": b64_hmac(SECRET, BODY, "sha512")}), NOW)
    hex_value = "sha512=" + hmac.new(SECRET.encode(), BODY, hashlib.sha512).hexdigest()
    with pytest.raises(WebhookUnauthorized):
        source.verify(request(BODY, {"X-Acme-Signature": hex_value}), NOW)


def test_numeric_fields_may_name_the_delivery() -> None:
    source = GenericSource("generic", SECRET, id_field="meta.seq")
    assert source.parse(signed.generic(BODY, SECRET)).delivery_id == "7"


def test_without_an_event_name_or_default_the_request_is_invalid() -> None:
    source = GenericSource("generic", SECRET, event_field="missing.path", default_event=None)
    with pytest.raises(WebhookInvalid, match="which event"):
        source.parse(signed.generic(BODY, SECRET))


def test_the_body_must_be_a_json_object() -> None:
    with pytest.raises(WebhookInvalid):
        GenericSource("generic", SECRET).parse(signed.generic(b"a=1", SECRET))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("", {}, "invalid source name"),
        ("has/slash", {}, "invalid source name"),
        ("dataflows", {}, "invalid source name"),
        ("ok", {"algorithm": "md5"}, "unsupported algorithm"),
        ("ok", {"encoding": "base32"}, "unsupported encoding"),
    ],
)
def test_bad_configuration_is_refused(name: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenericSource(name, SECRET, **options)


def test_from_environ_reads_the_options() -> None:
    source = generic.from_environ(
        "s1,s2",
        {
            "DATAFLOWS_GENERIC_HEADER": "X-Hook-Signature",
            "DATAFLOWS_GENERIC_ALGORITHM": "sha1",
            "DATAFLOWS_GENERIC_ENCODING": "base64",
            "DATAFLOWS_GENERIC_PREFIX": "sha1=",
            "DATAFLOWS_GENERIC_ID_HEADER": "",
            "DATAFLOWS_GENERIC_ID_FIELD": "meta.id",
            "DATAFLOWS_GENERIC_EVENT_HEADER": "",
            "DATAFLOWS_GENERIC_EVENT_FIELD": "type",
            "DATAFLOWS_GENERIC_DEFAULT_EVENT": "",
        },
    )
    assert source.name == "generic" and source.secrets == ["s1", "s2"]
    assert (source.header, source.algorithm, source.encoding, source.prefix) == (
        "X-Hook-Signature",
        "sha1",
        "base64",
        "sha1=",
    )
    assert (source.id_header, source.id_field) == (None, "meta.id")
    assert (source.event_header, source.event_field, source.default_event) == (None, "type", None)


def test_from_environ_keeps_defaults_for_unset_or_blank_required_options() -> None:
    source = generic.from_environ("s", {"DATAFLOWS_GENERIC_HEADER": " "})
    assert (source.header, source.id_header, source.event_header) == (
        "X-Signature",
        "X-Webhook-Id",
        "X-Event-Type",
    )


def test_trigger_helper() -> None:
    acme = GenericSource("acme", SECRET)
    assert acme.on("invoice.created") == EventTrigger("acme/invoice.created")
    assert acme.on("*").matches("acme/anything")
