from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import GitHubSource, github
from tests.sources import signed
from tests.sources.signed import NOW, body_of, request

SECRET = "It's a Secret to Everybody"
PR_OPENED = body_of({"action": "opened", "number": 1, "pull_request": {"title": "Fix"}})


def test_githubs_published_example_verifies() -> None:
    # docs.github.com, "Validating webhook deliveries": secret, payload and header as published.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    req = request(b"Hello, World!", {"X-Hub-Signature-256": expected})
    GitHubSource(SECRET).verify(req, NOW)
    assert signed.github(b"Hello, World!", SECRET).headers["X-Hub-Signature-256"] == expected


def test_uppercase_hex_and_lowercase_header_names_verify() -> None:
    value = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"
    GitHubSource(SECRET).verify(request(b"Hello, World!", {"x-hub-signature-256": value}), NOW)


def test_a_tampered_body_is_refused() -> None:
    req = signed.github(PR_OPENED, SECRET)
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        GitHubSource(SECRET).verify(request(PR_OPENED + b" ", dict(req.headers)), NOW)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookUnauthorized):
        GitHubSource(SECRET).verify(signed.github(PR_OPENED, "wrong"), NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-Hub-Signature-256"),
        ({"X-Hub-Signature": "sha1=abc"}, "missing X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": "757107ea0eb2509fc211"}, "start with 'sha256='"),
        ({"X-Hub-Signature-256": "sha256=zz\u00e9"}, "does not match"),
    ],
)
def test_missing_or_malformed_signature_is_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookUnauthorized, match=message):
        GitHubSource(SECRET).verify(request(b"Hello, World!", headers), NOW)


def test_rotation_accepts_every_secret() -> None:
    source = GitHubSource(["old", "new"])
    source.verify(signed.github(PR_OPENED, "old"), NOW)
    source.verify(signed.github(PR_OPENED, "new"), NOW)


def test_the_action_refines_the_event_name() -> None:
    source = GitHubSource(SECRET)
    event = source.parse(signed.github(PR_OPENED, SECRET, event="pull_request", delivery="d-1"))
    assert (event.name, event.delivery_id) == ("github/pull_request.opened", "d-1")
    assert event.data["pull_request"] == {"title": "Fix"}
    push = source.parse(signed.github(body_of({"ref": "refs/heads/main"}), SECRET, event="push"))
    assert push.name == "github/push"


def test_form_encoded_deliveries_parse() -> None:
    body = urlencode({"payload": json.dumps({"action": "created", "issue": {"id": 7}})}).encode()
    source = GitHubSource(SECRET)
    req = signed.github(body, SECRET, event="issue_comment")
    source.verify(req, NOW)
    event = source.parse(req)
    assert event.name == "github/issue_comment.created"
    assert event.data["issue"] == {"id": 7}


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_parse_needs_event_and_delivery(missing: str) -> None:
    req = signed.github(PR_OPENED, SECRET)
    headers = {k: v for k, v in req.headers.items() if k != missing}
    with pytest.raises(WebhookInvalid, match=missing):
        GitHubSource(SECRET).parse(request(PR_OPENED, headers))


@pytest.mark.parametrize("body", [b"[]", b"payload=%5B%5D", b"other=1", b"not json"])
def test_parse_needs_a_json_object(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        GitHubSource(SECRET).parse(signed.github(body, SECRET))


def test_ping_is_a_handshake() -> None:
    source = GitHubSource(SECRET)
    ping = signed.github(
        body_of({"zen": "Keep it logically awesome.", "hook_id": 1}), SECRET, "ping"
    )
    assert source.handshake(ping) == {"ok": True}
    assert source.handshake(signed.github(PR_OPENED, SECRET, "pull_request")) is None


def test_trigger_helpers() -> None:
    assert github.on("pull_request.opened") == EventTrigger("github/pull_request.opened")
    assert github.on("push").matches("github/push")
    assert github.on("pull_request.*").matches("github/pull_request.closed")
    assert not github.on("pull_request.*").matches("github/pull_request_review.submitted")
