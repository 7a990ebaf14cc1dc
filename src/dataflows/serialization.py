"""JSON in and out of the store. Nothing stored is ever pickled.

Values are dumped with ``ensure_ascii`` so every stored text is plain ASCII: lone surrogates and
NUL characters survive the round trip on both stores. NaN and infinities are rejected because they
are not JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dataflows.errors import PayloadError, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024
#: ``json.dumps(value, allow_nan=False, separators=(",", ":"))`` without building an encoder
#: per call (every step result goes through it).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
#: How the encoder writes a string (``ensure_ascii``).
_encode_ascii = json.encoder.encode_basestring_ascii


def dumps(value: Any, *, what: str, limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Serialize ``value`` for storage, or raise :class:`PayloadError` saying why not."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} is not JSON-serializable: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply to serialize") from None
    if len(text) > limit:
        raise PayloadTooLarge(what, len(text), limit)
    return text


def dumps_result(value: Any, key: str, limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """:func:`dumps` of a step's result: the same text, written directly for the scalars most
    steps return (an exact ``int``, ``str``, ``bool`` or ``None``) without the encoder."""
    kind = type(value)
    if kind is int:
        text = int.__repr__(value)
    elif kind is str:
        text = _encode_ascii(value)
    elif value is None:
        text = "null"
    elif kind is bool:
        text = "true" if value else "false"
    else:
        return dumps(value, what=f"the result of step {key!r}", limit=limit)
    if len(text) > limit:
        raise PayloadTooLarge(f"the result of step {key!r}", len(text), limit)
    return text


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def strict_loads(text: str) -> Any:
    """Parse JSON text that the store can keep.

    Raises :class:`json.JSONDecodeError` for malformed JSON, and :class:`ValueError` saying why
    for a ``NaN``/``Infinity``/``-Infinity`` literal, a number out of float range or an integer
    too long to convert (none of them is JSON a database can hold).
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number {literal[:40]} is out of range")
    return value


def check_event_data(data: Any, *, limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Validate an event's ``data``: a JSON object without NUL characters or lone surrogates.

    Events are matched inside the database (PostgreSQL ``jsonb``), which cannot hold those, so they
    are refused up front on every store alike.
    """
    if not isinstance(data, dict):
        raise PayloadError(f"event data must be a JSON object, got {type(data).__name__}")
    text = dumps(data, what="event data", limit=limit)
    if "\\u" in text:  # ASCII-only text: a NUL or a surrogate would show as an escape
        _check_text(data)
    return text


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise PayloadError("event data must not contain NUL characters (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError("event data must not contain lone surrogate characters") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)
