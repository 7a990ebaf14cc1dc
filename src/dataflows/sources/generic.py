"""A configurable HMAC source, for providers without a built-in one.

The signature header carries ``prefix`` and the HMAC of the raw body, hex or base64. The event is
``{name}/{...}``: the ``event_header`` header if the request has it, else the ``event_field`` of
the body (a dotted path), else ``default_event``. The delivery id is the ``id_header`` header, else
the ``id_field`` of the body; a request with neither gets a fresh id, so it is deduplicated only
by its body. The signature covers the body alone, so the same body within ``replay_window``
(default 24 hours; ``0`` or ``None`` turns it off) is a duplicate of its first event, whatever
its id header says: turn the window off for a provider that sends identical bodies for distinct
deliveries and names them only by an unsigned header.

The instance enabled by ``DATAFLOWS_GENERIC_SECRET`` is named ``generic`` and reads its options
from ``DATAFLOWS_GENERIC_HEADER``, ``_ALGORITHM``, ``_ENCODING``, ``_PREFIX``, ``_ID_HEADER``,
``_ID_FIELD``, ``_EVENT_HEADER``, ``_EVENT_FIELD``, ``_DEFAULT_EVENT`` and ``_REPLAY_WINDOW`` (see
:func:`from_environ`).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dataflows.durations import Duration
from dataflows.errors import WebhookInvalid
from dataflows.names import INTERNAL_PREFIX
from dataflows.sources.base import (
    DEFAULT_REPLAY_WINDOW,
    BodySignedSource,
    WebhookEvent,
    WebhookRequest,
)
from dataflows.sources.payloads import json_object, webhook_event
from dataflows.sources.signing import (
    ALGORITHMS,
    as_bytes,
    check_signature,
    hmac_digest,
    require_header,
    strip_prefix,
)
from dataflows.sources.signing import header as get_header
from dataflows.workflow import EventTrigger, on_event

ENCODINGS = ("hex", "base64")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


class GenericSource(BodySignedSource):
    """``POST /hooks/{name}``: a shared-secret HMAC over the body, configured per provider."""

    def __init__(
        self,
        name: str,
        secrets: str | Sequence[str],
        *,
        header: str = "X-Signature",
        algorithm: str = "sha256",
        encoding: str = "hex",
        prefix: str = "",
        id_header: str | None = "X-Webhook-Id",
        id_field: str | None = None,
        event_header: str | None = "X-Event-Type",
        event_field: str | None = None,
        default_event: str | None = "webhook",
        replay_window: Duration | None = DEFAULT_REPLAY_WINDOW,
    ) -> None:
        if not _NAME.fullmatch(name) or f"{name}/" == INTERNAL_PREFIX:
            raise ValueError(f"invalid source name {name!r}: letters, digits, '_', '.', '-'")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
        if encoding not in ENCODINGS:
            raise ValueError(f"unsupported encoding {encoding!r}: 'hex' or 'base64'")
        self.name = name
        super().__init__(secrets, replay_window=replay_window)
        self.header = header
        self.algorithm = algorithm
        self.encoding = encoding
        self.prefix = prefix
        self.id_header = id_header
        self.id_field = id_field
        self.event_header = event_header
        self.event_field = event_field
        self.default_event = default_event

    def verify(self, request: WebhookRequest, now: float) -> None:
        value = strip_prefix(require_header(request, self.header), self.prefix, self.header)
        presented = as_bytes(value.strip().lower() if self.encoding == "hex" else value.strip())
        digests = (hmac_digest(s, request.body, self.algorithm) for s in self.secrets)
        expected = (
            d.hex().encode() if self.encoding == "hex" else base64.b64encode(d) for d in digests
        )
        check_signature(expected, [presented], self.header)

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        data = json_object(request.body)
        event = self._pick(request, data, self.event_header, self.event_field) or self.default_event
        if event is None:
            where = f"header {self.event_header!r}, field {self.event_field!r}"
            raise WebhookInvalid(f"the request does not say which event it is ({where})")
        delivery = self._pick(request, data, self.id_header, self.id_field) or uuid.uuid4().hex
        return webhook_event(self.name, event, data, delivery)

    def on(self, event: str) -> EventTrigger:
        """Trigger on ``{name}/{event}``: ``acme.on("invoice.created")``, ``acme.on("*")``."""
        return on_event(f"{self.name}/{event}")

    @staticmethod
    def _pick(
        request: WebhookRequest, data: dict[str, Any], header: str | None, field: str | None
    ) -> str | None:
        value = get_header(request, header) if header else None
        if value is not None and value.strip():
            return value.strip()
        found = _lookup(data, field) if field else None
        if isinstance(found, int | str) and not isinstance(found, bool) and str(found):
            return str(found)
        return None


def _lookup(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


_REQUIRED = ("header", "algorithm", "encoding", "prefix")
_OPTIONAL = (
    "id_header",
    "id_field",
    "event_header",
    "event_field",
    "default_event",
    "replay_window",
)


def from_environ(secret: str, environ: Mapping[str, str], name: str = "generic") -> GenericSource:
    """The source ``name`` configured by ``DATAFLOWS_{NAME}_{OPTION}`` variables.

    An unset variable keeps the default; an empty one turns an optional setting off (e.g.
    ``DATAFLOWS_GENERIC_EVENT_HEADER=`` to name events only by ``_EVENT_FIELD``, or
    ``DATAFLOWS_GENERIC_REPLAY_WINDOW=`` for no replay window).
    """
    options: dict[str, Any] = {}
    for option in _REQUIRED + _OPTIONAL:
        value = environ.get(f"DATAFLOWS_{name.upper()}_{option.upper()}")
        if value is not None and value.strip():
            options[option] = value.strip()
        elif value is not None and option in _OPTIONAL:
            options[option] = None
    return GenericSource(name, secret, **options)
