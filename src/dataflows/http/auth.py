"""API keys: ``Authorization: Bearer <key>`` on every route but webhooks and health checks.

Several keys may be active at once so a key can be rotated without downtime. Keys are compared in
constant time, and against every configured key, so the answer's timing reveals neither how much
of a key matched nor which key it was.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from dataflows.http.errors import ApiError, error_response

__all__ = [
    "BearerAuthMiddleware",
    "bearer_token",
    "identity",
    "is_public",
    "key_matches",
    "parse_api_keys",
]

#: Routes open without a key: webhooks authenticate by their source's signature, health checks
#: come from load balancers and orchestrators, approval pages by their signed link, and the
#: pages' stylesheet is public.
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_PUBLIC_PREFIXES = ("/hooks/", "/approvals/", "/static/")

#: A key written ``name:secret`` has an identity, ``name`` (approvers are named by it).
_NAMED_KEY = re.compile(r"([A-Za-z0-9._@+-]{1,64}):.+", re.DOTALL)


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


def identity(given: str, keys: Sequence[str]) -> str | None:
    """The identity of the key ``given`` if it is one of ``keys`` and has one: a key written
    ``name:secret`` (the whole of it is the key) is ``name``'s; other keys have no identity."""
    if not key_matches(given, [key.encode("utf-8") for key in keys]):
        return None
    named = _NAMED_KEY.fullmatch(given)
    return None if named is None else named.group(1)


def is_public(path: str) -> bool:
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def bearer_token(scope: Scope) -> str | None:
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

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[str],
        exempt: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.keys = [key.encode("utf-8") for key in keys]
        #: Requests someone else checks (the dashboard's pages, by their session cookie).
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.keys
            and not is_public(_route_path(scope))
            and not (self.exempt is not None and self.exempt(scope))
        ):
            token = bearer_token(scope)
            if token is None or not key_matches(token, self.keys):
                await error_response(_unauthorized(token is None))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _unauthorized(missing: bool) -> ApiError:
    message = "send Authorization: Bearer <key>" if missing else "the API key is not valid"
    challenge = 'Bearer realm="dataflows"' + ("" if missing else ', error="invalid_token"')
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": challenge})
