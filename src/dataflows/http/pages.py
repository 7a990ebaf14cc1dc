"""Server-rendered HTML pages: Jinja2 templates and the stylesheet shipped inside the package.

Every value is escaped (autoescape on for every template); pages load nothing but the
package's own stylesheet, run no script, and forbid framing (``Content-Security-Policy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dataflows.http.body import read_body
from dataflows.http.errors import ApiError

__all__ = ["DASHBOARD_HEADERS", "PAGE_HEADERS", "render", "static_file"]

_HERE = Path(__file__).parent
_STATIC = {
    "dataflows.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}

#: Headers of every page: no caching (pages hold one-time state), no framing, no scripts, no
#: referrer (an approval page's URL is a credential).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

#: The dashboard's pages also run the package's own script, which reads the live-update stream.
DASHBOARD_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
}


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered with ``context`` (plus ``static_url``), as a page."""
    root = request.scope.get("root_path", "")
    html = _environment().get_template(template).render(static_url=f"{root}/static", **context)
    return HTMLResponse(html, status_code, headers={**PAGE_HEADERS, **(headers or {})})


async def static_file(request: Request) -> Response:
    """``GET /static/{name}``: the pages' stylesheet and the dashboard's script."""
    name = request.path_params["name"]
    media_type = _STATIC.get(name)
    if media_type is None:
        return Response("not found", 404, media_type="text/plain")
    body = (_HERE / "static" / name).read_bytes()
    return Response(
        body,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


class FormError(Exception):
    """A form post that cannot be read: its status, a heading, and what went wrong (``None``:
    the page says how to send it instead)."""

    def __init__(self, status: int, heading: str, line: str | None = None) -> None:
        super().__init__(heading)
        self.status, self.heading, self.line = status, heading, line


async def read_form(request: Request, most: int) -> dict[str, str]:
    """A page's form post: urlencoded, at most ``most`` bytes, UTF-8, each field once."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError(415, "Not a form")
    try:
        body = await read_body(request, most)
    except ApiError as exc:
        raise FormError(exc.status, "The form could not be read", exc.message) from None
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "The form could not be read") from None
    if any(len(values) != 1 for values in fields.values()):
        raise FormError(400, "The form could not be read", "Each field must be sent once.")
    return {name: values[0] for name, values in fields.items()}
