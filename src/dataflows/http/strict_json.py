"""Strict JSON: what the API accepts is exactly what the store can keep and match on.

Malformed JSON (and bodies that are not UTF-8) is a 400. JSON that parses but cannot be stored is
a 422: ``NaN``/``Infinity`` literals and numbers out of float range, integers too long to convert,
strings with NUL (``\\u0000``) or lone surrogates (PostgreSQL ``jsonb`` holds neither), and nesting
deeper than :data:`MAX_DEPTH` containers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dataflows.http.errors import ApiError

__all__ = ["MAX_DEPTH", "check_json", "parse_json"]

MAX_DEPTH = 64


class _NotStorable(ValueError):
    pass


def parse_json(body: bytes) -> Any:
    """Parse ``body`` strictly and check it with :func:`check_json`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # _NotStorable, or an integer too long to convert
        raise _invalid(str(exc)) from None
    check_json(value)
    return value


def _reject_constant(name: str) -> Any:
    raise _NotStorable(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotStorable(f"number {literal[:40]} is out of range")
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
