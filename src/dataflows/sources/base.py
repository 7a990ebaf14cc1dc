"""What a webhook source is: verify a provider's request on its raw bytes, turn it into an event.

A source never touches the store: the HTTP API verifies, parses, then sends the event through the
app with the id ``"{source}:{delivery_id}"``, so a provider's redelivery of the same delivery is
deduplicated by the store like any repeated event id.

Where the signature covers the body but not the delivery id (``signs_delivery_id`` false:
GitHub, Shopify, the generic source), a captured request could be sent again with a new delivery
id. Those sources have a ``replay_window``: the API also sends the body's SHA-256, and the store
answers a body it saw within the window as a duplicate of the event it became.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataflows.durations import Duration, parse_duration

#: How long a body signed without its delivery id is remembered, unless a source says otherwise.
DEFAULT_REPLAY_WINDOW = "24h"

_SECONDS = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """The parts of an HTTP request a source may look at. ``headers`` match case-insensitively."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One delivery, as the event it becomes."""

    name: str
    data: dict[str, Any]
    delivery_id: str


class Source(abc.ABC):
    """A webhook provider. ``name`` is the path segment: ``POST /hooks/{name}``.

    ``secrets`` are all accepted at once, so a secret can be rotated without downtime.
    """

    name: str
    #: Whether a captured request cannot start anything new under another delivery id: the id
    #: is part of what the provider signs, or comes from the signed body, or a signed timestamp
    #: bounds how long the request is accepted at all.
    signs_delivery_id: bool = True
    #: Seconds within which the same body is a duplicate of its first event (``None``: off).
    replay_window: float | None = None

    def __init__(self, secrets: str | Sequence[str]) -> None:
        values = [secrets] if isinstance(secrets, str) else list(secrets)
        self.secrets = [s.strip() for value in values for s in value.split(",") if s.strip()]
        if not self.secrets:
            raise ValueError(f"source {self.name!r} needs at least one secret")

    @abc.abstractmethod
    def verify(self, request: WebhookRequest, now: float) -> None:
        """Raise :class:`~dataflows.errors.WebhookUnauthorized` unless the request is authentic.

        Compares in constant time, on the raw body bytes, against every configured secret.
        """

    @abc.abstractmethod
    def parse(self, request: WebhookRequest) -> WebhookEvent:
        """The event of a verified request; :class:`~dataflows.errors.WebhookInvalid` if none."""

    def handshake(self, request: WebhookRequest) -> dict[str, Any] | None:
        """A verified request the provider sends to check the endpoint (Slack's URL
        verification): the JSON to answer with (200), and no event is stored. Default: none."""
        return None


class BodySignedSource(Source):
    """A source whose signature covers the raw body alone: the delivery id and the event-name
    header are not signed. The same body within ``replay_window`` (default 24 hours; ``0`` or
    ``None`` turns it off) is a duplicate of its first delivery's event."""

    signs_delivery_id = False

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        replay_window: Duration | None = DEFAULT_REPLAY_WINDOW,
    ) -> None:
        super().__init__(secrets)
        self.replay_window = replay_window_seconds(replay_window)


def replay_window_seconds(value: Duration | None) -> float | None:
    """A replay window in seconds, ``None`` when off (``None``, ``0``, ``"0"``, ``""``); a
    string of digits alone counts seconds, as in an environment variable. ``ValueError`` for a
    negative one or one that is not a duration."""
    if isinstance(value, str):
        value = value.strip()
        if _SECONDS.fullmatch(value):
            value = float(value)
    if value is None or value == "":
        return None
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"replay_window must not be negative, got {value!r}")
    return seconds or None
