from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import SlackSource, slack
from tests.sources import signed
from tests.sources.signed import NOW, body_of, request

# api.slack.com, "Verifying requests from Slack": the published slash command example.
DOCS_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOCS_TIMESTAMP = "1531420618"
DOCS_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOCS_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
DOCS_REQUEST = request(
    DOCS_BODY,
    {"X-Slack-Request-Timestamp": DOCS_TIMESTAMP, "X-Slack-Signature": DOCS_SIGNATURE},
)

SECRET = "slack-signing-secret"
MENTION = body_of(
    {
        "type": "event_callback",
        "team_id": "T123ABC456",
        "event": {"type": "app_mention", "user": "U123", "text": "<@U0LAN0Z89> hi"},
        "event_id": "Ev123ABC456",
        "event_time": 1700000000,
    }
)


def test_slacks_published_example_verifies_and_parses_as_a_command() -> None:
    source = SlackSource(DOCS_SECRET)
    source.verify(DOCS_REQUEST, float(DOCS_TIMESTAMP) + 10)
    event = source.parse(DOCS_REQUEST)
    assert event.name == "slack/command"
    assert event.delivery_id == f"{DOCS_TIMESTAMP}:{DOCS_SIGNATURE}"
    assert event.data["command"] == "/webhook-collect"
    assert event.data["text"] == ""
    assert event.data["response_url"].startswith("https://hooks.slack.com/commands/")


@pytest.mark.parametrize(("skew", "message"), [(301, "old"), (-301, "future"), (10**9, "old")])
def test_the_published_example_is_refused_outside_five_minutes(skew: int, message: str) -> None:
    with pytest.raises(WebhookUnauthorized, match=message):
        SlackSource(DOCS_SECRET).verify(DOCS_REQUEST, float(DOCS_TIMESTAMP) + skew)


@pytest.mark.parametrize("skew", [-300, 300])
def test_five_minutes_either_way_is_accepted(skew: int) -> None:
    SlackSource(DOCS_SECRET).verify(DOCS_REQUEST, float(DOCS_TIMESTAMP) + skew)


def test_a_tampered_body_or_timestamp_is_refused() -> None:
    source = SlackSource(DOCS_SECRET)
    now = float(DOCS_TIMESTAMP)
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        source.verify(request(DOCS_BODY + b"&x=1", dict(DOCS_REQUEST.headers)), now)
    headers = {**DOCS_REQUEST.headers, "X-Slack-Request-Timestamp": str(int(now) + 1)}
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        source.verify(request(DOCS_BODY, headers), now)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookUnauthorized):
        SlackSource(SECRET).verify(DOCS_REQUEST, float(DOCS_TIMESTAMP))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Slack-Signature": DOCS_SIGNATURE}, "missing X-Slack-Request-Timestamp"),
        ({"X-Slack-Request-Timestamp": DOCS_TIMESTAMP}, "missing X-Slack-Signature"),
        (
            {"X-Slack-Request-Timestamp": DOCS_TIMESTAMP, "X-Slack-Signature": DOCS_SIGNATURE[3:]},
            "start with 'v0='",
        ),
        (
            {"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": DOCS_SIGNATURE},
            "malformed X-Slack-Request-Timestamp",
        ),
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookUnauthorized, match=message):
        SlackSource(DOCS_SECRET).verify(request(DOCS_BODY, headers), float(DOCS_TIMESTAMP))


def test_rotation_accepts_every_secret() -> None:
    source = SlackSource([SECRET, DOCS_SECRET])
    source.verify(DOCS_REQUEST, float(DOCS_TIMESTAMP))
    source.verify(signed.slack(MENTION, SECRET), NOW)


def test_events_api_events_are_named_by_their_inner_type_and_deduplicated_by_event_id() -> None:
    source = SlackSource(SECRET)
    first = signed.slack(MENTION, SECRET, NOW)
    retry = signed.slack(MENTION, SECRET, NOW + 60)  # Slack re-signs a retry with a new timestamp
    source.verify(retry, NOW + 60)
    events = [source.parse(first), source.parse(retry)]
    assert {e.name for e in events} == {"slack/event_callback.app_mention"}
    assert {e.delivery_id for e in events} == {"Ev123ABC456"}
    assert events[0].data["event"]["text"] == "<@U0LAN0Z89> hi"


def test_other_envelopes_are_named_by_their_type() -> None:
    body = body_of({"type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1})
    req = signed.slack(body, SECRET)
    event = SlackSource(SECRET).parse(req)
    assert event.name == "slack/app_rate_limited"
    assert event.delivery_id == f"{int(NOW)}:{req.headers['X-Slack-Signature']}"


def test_interaction_payloads_are_named_by_their_type() -> None:
    payload = {"type": "block_actions", "trigger_id": "t1", "actions": [{"action_id": "ok"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    source = SlackSource(SECRET)
    req = signed.slack(body, SECRET)
    source.verify(req, NOW)
    event = source.parse(req)
    assert event.name == "slack/block_actions"
    assert event.data == payload


@pytest.mark.parametrize(
    "body", [b"[]", b"{}", b'{"type": 3}', b"user_id=U1", b"payload=%7B%7D", b"payload=nope"]
)
def test_unknown_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        SlackSource(SECRET).parse(signed.slack(body, SECRET))


def test_url_verification_is_answered_with_the_challenge() -> None:
    body = body_of(
        {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdAL",
            "type": "url_verification",
        }
    )
    source = SlackSource(SECRET)
    req = signed.slack(body, SECRET)
    source.verify(req, NOW)
    assert source.handshake(req) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdAL"}


def test_ssl_check_is_answered_empty() -> None:
    assert SlackSource(SECRET).handshake(signed.slack(b"ssl_check=1&token=t", SECRET)) == {}


@pytest.mark.parametrize(
    "body", [MENTION, DOCS_BODY, b"{not json", b"%ff=1", b'{"type": "url_verification"}']
)
def test_other_requests_are_not_handshakes(body: bytes) -> None:
    assert SlackSource(SECRET).handshake(signed.slack(body, SECRET)) is None


def test_trigger_helpers() -> None:
    assert slack.on("command") == slack.on_command() == EventTrigger("slack/command")
    assert slack.on_event_callback("app_mention") == EventTrigger(
        "slack/event_callback.app_mention"
    )
    assert slack.on("event_callback.*").matches("slack/event_callback.message")
    assert slack.on("view_submission").matches("slack/view_submission")
