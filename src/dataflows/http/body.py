"""Reading request bodies: size-limited while streaming, JSON only where JSON is expected."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from dataflows.http.errors import ApiError
from dataflows.http.strict_json import parse_json

__all__ = ["read_body", "read_json"]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read; a chunked
    body (no length) is counted as it streams in, so an endless one never fills memory.
    """
    _check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise ApiError(400, "bad_request", f"invalid Content-Length {declared!r}")
    if int(declared) > limit:
        raise _too_large(limit)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is over the {limit}-byte limit")


async def read_json(request: Request, limit: int, *, optional: bool = False) -> Any:
    """The body parsed as strict JSON (see :mod:`strict_json`).

    With ``optional``, an empty body is ``None`` when it comes without a content type or with
    a JSON one. A declared non-JSON type is refused at once, before the body is read.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None or not optional:
        _require_json(content_type)
    body = await read_body(request, limit)
    if optional and not body:
        return None
    if content_type is None:  # a body after all, but no content type
        _require_json(content_type)
    return parse_json(body)


def _require_json(content_type: str | None) -> None:
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        shown = content_type or "none"
        raise ApiError(
            415, "unsupported_media_type", f"send Content-Type: application/json, not {shown}"
        )
    charset = _charset(params)
    if charset not in (None, "utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"JSON must be UTF-8, not {charset}")


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None
