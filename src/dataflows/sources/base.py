"""What a webhook source is: verify a provider's request on its raw bytes, turn it into an event.

A source never touches the store: the HTTP API verifies, parses, then sends the event through the
app with the id ``"{source}:{delivery_id}"``, so a provider's redelivery of the same delivery is
deduplicated by the store like any repeated event id.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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
