"""API keys: ``Authorization: Bearer <key>`` on every route but webhooks and health checks.

Several keys may be active at once so a key can be rotated without downtime. Keys are compared in
constant time, and against every configured key, so the answer's timing reveals neither how much
of a key matched nor which key it was.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from dataflows.http.errors import ApiError, error_response

__all__ = ["BearerAuthMiddleware", "is_public", "key_matches", "parse_api_keys"]

#: Routes open without a key: webhooks authenticate by their source's signature, and health
#: checks come from load balancers and orchestrators.
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_PUBLIC_PREFIX = "/hooks/"


def parse_api_keys(value: str) -> tuple[str, ...]:
    """``DATAFLOWS_API_KEYS``: comma-separated keys; blanks around and between are ignored."""
    return tuple(key.strip() for key in value.split(",") if key.strip())


def key_matches(given: str, keys: Sequence[bytes]) -> bool:
    """Whether ``given`` equals one of ``keys``, comparing against all of them, in constant time."""
    candidate = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def is_public(path: str) -> bool:
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIX)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class BearerAuthMiddleware:
    """Refuse requests without a valid key with 401 and ``WWW-Authenticate: Bearer``."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [key.encode("utf-8") for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and not is_public(_route_path(scope)):
            token = _bearer_token(scope)
            if token is None or not key_matches(token, self.keys):
                await error_response(_unauthorized(token is None))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _unauthorized(missing: bool) -> ApiError:
    message = "send Authorization: Bearer <key>" if missing else "the API key is not valid"
    challenge = 'Bearer realm="dataflows"' + ("" if missing else ', error="invalid_token"')
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": challenge})
