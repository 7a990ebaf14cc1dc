"""Strict JSON: what the API accepts is exactly what the store can keep and match on.

Malformed JSON (and bodies that are not UTF-8) is a 400. JSON that parses but cannot be stored is
a 422: ``NaN``/``Infinity`` literals and numbers out of float range, integers too long to convert,
strings with NUL (``\\u0000``) or lone surrogates (PostgreSQL ``jsonb`` holds neither), and nesting
deeper than :data:`MAX_DEPTH` containers.
"""

from __future__ import annotations

import json
from typing import Any

from dataflows.http.errors import ApiError
from dataflows.serialization import strict_loads

__all__ = ["MAX_DEPTH", "check_json", "parse_json"]

MAX_DEPTH = 64


def parse_json(body: bytes) -> Any:
    """Parse ``body`` strictly and check it with :func:`check_json`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8") from None
    try:
        value = strict_loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # NaN, a number out of range, an integer too long to convert
        raise _invalid(str(exc)) from None
    check_json(value)
    return value


def check_json(value: Any, *, code: str = "invalid_request") -> None:
    """Raise 422 ``code`` if ``value`` holds NUL, a lone surrogate, or nests too deeply.

    Walks iteratively, so no input can exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node, code)
        elif isinstance(node, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels", code)
            if isinstance(node, dict):
                for key in node:
                    if isinstance(key, str):
                        _check_text(key, code)
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, depth + 1) for item in items)


def _check_text(text: str, code: str) -> None:
    if "\x00" in text:
        raise _invalid("strings must not contain NUL characters (\\u0000)", code)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("strings must not contain lone surrogates", code) from None


def _invalid(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(422, code, message)
