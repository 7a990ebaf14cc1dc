"""Checking a request's credentials: headers, HMACs, timestamps, all compared in constant time.

Every helper here works on the raw body bytes and never parses them. A signature is compared with
every configured secret (no early exit on the first match or mismatch), so how long a check takes
says nothing about which secret, if any, came close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from dataflows.errors import WebhookUnauthorized
from dataflows.sources.base import WebhookRequest

#: Hash algorithms a configurable HMAC may use (``sha1`` only for legacy senders).
ALGORITHMS = ("sha1", "sha224", "sha256", "sha384", "sha512")


def header(request: WebhookRequest, name: str) -> str | None:
    """The header ``name``, matched case-insensitively whatever mapping the caller passed."""
    value = request.headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in request.headers.items():
        if key.lower() == lowered:
            return item
    return None


def require_header(request: WebhookRequest, name: str) -> str:
    """The header ``name``, or :class:`WebhookUnauthorized` when it is missing or empty."""
    value = header(request, name)
    if value is None or not value.strip():
        raise WebhookUnauthorized(f"missing {name} header")
    return value.strip()


def strip_prefix(value: str, prefix: str, name: str) -> str:
    """``value`` without ``prefix`` (e.g. ``sha256=``); :class:`WebhookUnauthorized` if absent."""
    if not value.startswith(prefix):
        raise WebhookUnauthorized(f"malformed {name} header: expected it to start with {prefix!r}")
    return value[len(prefix) :]


def hmac_digest(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode("utf-8"), message, getattr(hashlib, algorithm)).digest()


def as_bytes(value: str) -> bytes:
    """A header value as bytes for :func:`hmac.compare_digest` (which refuses non-ASCII text)."""
    return value.encode("utf-8", "replace")


def matches_any(expected: Iterable[bytes], presented: Iterable[bytes]) -> bool:
    """Whether any presented value equals any expected one, comparing every pair."""
    presented = list(presented)
    found = False
    for want in expected:
        for got in presented:
            found |= hmac.compare_digest(want, got)
    return found


def check_signature(expected: Iterable[bytes], presented: Iterable[bytes], name: str) -> None:
    if not matches_any(expected, presented):
        raise WebhookUnauthorized(f"{name} does not match the body for any configured secret")


def check_timestamp(value: str, now: float, tolerance: float, name: str) -> int:
    """A Unix timestamp in seconds no further than ``tolerance`` from ``now``, in either direction.

    Refusing future timestamps too means a leaked signed request cannot be post-dated to stay
    replayable for longer than the tolerance.
    """
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise WebhookUnauthorized(f"malformed {name}: expected a Unix timestamp in seconds")
    timestamp = int(value)
    if timestamp < now - tolerance:
        raise WebhookUnauthorized(f"{name} is more than {tolerance:g}s old")
    if timestamp > now + tolerance:
        raise WebhookUnauthorized(f"{name} is more than {tolerance:g}s in the future")
    return timestamp
