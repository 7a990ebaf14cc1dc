"""The web dashboard: server-rendered pages over the app's store, served at ``/``.

Pages: runs (``/``), a run (``/runs/{id}``, for a browser: an ``Accept: text/html`` request
without ``Authorization``), workflows (``/workflows``, the same way) and the approvals inbox
(``/approvals/inbox``). Actions (cancel, retry, send an event, decide an approval) are form
posts under ``/dashboard/``, each carrying a CSRF token: an HMAC of a random nonce the browser
holds in an HttpOnly cookie. Live updates come from ``/dashboard/stream`` (server-sent events);
every page reads whole without JavaScript.

With API keys configured (``DATAFLOWS_API_KEYS``), ``/login`` exchanges a key for a session
cookie (HttpOnly, SameSite=Lax) signed with ``DATAFLOWS_SECRET_KEY``; anonymous page requests are
sent to the login page, anonymous actions refused with 401. Without keys the dashboard is open,
as the API is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Scope

from dataflows.child_runs import child_run_id
from dataflows.errors import InvalidRunState, RunNotFound, StoreUnavailable
from dataflows.http.auth import identity, key_matches
from dataflows.http.context import ApiContext, context
from dataflows.http.errors import ApiError
from dataflows.http.pages import DASHBOARD_HEADERS, FormError, read_form, render
from dataflows.http.shapes import MAX_ID_LENGTH, is_valid_id
from dataflows.http.strict_json import parse_json
from dataflows.models import Run, StepInfo, error_line
from dataflows.records import RUN_STATUSES, RunRow
from dataflows.workflow import CronTrigger, EventTrigger

__all__ = [
    "SESSION_COOKIE",
    "stop_streams",
    "is_dashboard_request",
    "routes",
    "session_identity",
]

logger = logging.getLogger("dataflows.http")

SESSION_COOKIE = "dataflows_session"
CSRF_COOKIE = "dataflows_dash_csrf"
#: How long a session lasts, in seconds.
SESSION_SECONDS = 12 * 3600
#: The largest form accepted, in bytes.
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZE = 50
EVENTS_PAGE = 25
REJECTIONS_SHOWN = 25
#: Seconds between two looks at the store for a live page, and the most one stream lasts (the
#: browser reconnects by itself).
STREAM_INTERVAL = 1.0
STREAM_SECONDS = 25.0

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_RUN_PAGE = re.compile(r"/runs/[^/]+")
_PAGE_PATHS = frozenset({"/", "/login", "/logout", "/events", "/approvals/inbox"})


# -- who may see the pages --------------------------------------------------------------------------


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def wants_page(scope: Scope) -> bool:
    """A browser's request: ``GET`` accepting HTML, without an API key."""
    accept = _header(scope, b"accept") or ""
    return (
        scope.get("method") in ("GET", "HEAD")
        and "text/html" in accept
        and _header(scope, b"authorization") is None
    )


def is_dashboard_request(scope: Scope) -> bool:
    """Whether the dashboard (not the API's keys) decides who may make this request."""
    path = _route_path(scope)
    if path in _PAGE_PATHS or path.startswith("/dashboard/"):
        return True
    if path == "/workflows" or _RUN_PAGE.fullmatch(path):
        return wants_page(scope)
    return False


def _secret(ctx: ApiContext) -> bytes:
    """The key sessions and CSRF tokens are signed with: ``DATAFLOWS_SECRET_KEY``, else one made
    for this process (forms then work with one server process only)."""
    key = ctx.app.secret_key
    if key:
        return hashlib.sha256(b"dataflows-dashboard\x00" + key.encode()).digest()
    global _PROCESS_SECRET
    if _PROCESS_SECRET is None:
        _PROCESS_SECRET = secrets.token_bytes(32)
    return _PROCESS_SECRET


_PROCESS_SECRET: bytes | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_tag(key: str) -> str:
    """Which key a session came from (so removing the key ends its sessions), not the key."""
    return hashlib.sha256(b"dataflows-key\x00" + key.encode()).hexdigest()[:24]


def make_session(ctx: ApiContext, key: str, now: float) -> str:
    payload = _b64(
        json.dumps(
            {
                "who": identity(key, ctx.api_keys),
                "key": _key_tag(key),
                "exp": int(now + SESSION_SECONDS),
            }
        ).encode()
    )
    sig = _b64(hmac.new(_secret(ctx), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{sig}"


def session_claims(ctx: ApiContext, cookie: str | None, now: float) -> dict[str, Any] | None:
    """The claims of a good session cookie; ``None`` for a missing, tampered or expired cookie,
    or one signed in with a key no longer configured."""
    if not cookie or len(cookie) > 1024 or "." not in cookie or not ctx.app.secret_key:
        return None
    payload, _, sig = cookie.partition(".")
    want = _b64(hmac.new(_secret(ctx), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want.encode(), sig.encode()):
        return None
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        return None
    if claims["exp"] < now or claims.get("key") not in {_key_tag(k) for k in ctx.api_keys}:
        return None
    return claims


def session_identity(ctx: ApiContext, cookie: str | None, now: float) -> str | None:
    """The identity (``name`` of a ``name:secret`` key) a good session cookie signs in, if any."""
    claims = session_claims(ctx, cookie, now)
    who = None if claims is None else claims.get("who")
    return who if isinstance(who, str) else None


def signed_in(request: Request) -> str | None:
    """Who is signed in to the dashboard, as shown: a key's name or ``"signed in"``; ``""`` when
    the dashboard is open (no keys configured); ``None`` for nobody."""
    ctx = context(request)
    if not ctx.api_keys:
        return ""
    claims = session_claims(ctx, request.cookies.get(SESSION_COOKIE), time.time())
    if claims is None:
        return None
    who = claims.get("who")
    return who if isinstance(who, str) and who else "signed in"


def _csrf_for(ctx: ApiContext, nonce: str) -> str:
    return _b64(hmac.new(_secret(ctx), b"csrf\x00" + nonce.encode(), hashlib.sha256).digest())


def _csrf_ok(request: Request, form: Mapping[str, str]) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE, "")
    given = form.get("csrf", "")
    if not _NONCE.fullmatch(nonce) or not given:
        return False
    return hmac.compare_digest(_csrf_for(context(request), nonce).encode(), given.encode())


# -- errors shown as pages -------------------------------------------------------------------------


class PageError(Exception):
    def __init__(self, status: int, heading: str, *lines: str) -> None:
        super().__init__(heading)
        self.status, self.heading, self.lines = status, heading, lines


Handler = Callable[[Request], Awaitable[Response]]


def _page(handler: Handler, *, action: bool = False) -> Handler:
    """``handler`` behind the dashboard's sign-in, its failures shown as pages."""

    async def wrapped(request: Request) -> Response:
        try:
            if signed_in(request) is None:
                if action:
                    raise PageError(401, "Sign in first", "Your session has ended.")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{_root(request)}/login?next={quote(target)}", 303)
            return await handler(request)
        except PageError as exc:
            return _message(request, exc)
        except RunNotFound:
            return _message(request, PageError(404, "No such run", "It may have been purged."))
        except StoreUnavailable:
            return _message(
                request,
                PageError(503, "Try again in a moment", "The database did not answer in time."),
            )
        except Exception:
            logger.exception("dashboard page %s failed", request.url.path)
            return _message(
                request, PageError(500, "Something went wrong", "The server log says what.")
            )

    return wrapped


def _message(request: Request, exc: PageError) -> Response:
    tone = "warn" if exc.status < 500 and exc.status not in (401, 403, 404) else "bad"
    return _render(
        request,
        "message.html",
        {
            "page_title": exc.heading,
            "tone": tone,
            "heading": exc.heading,
            "lines": exc.lines,
            "title": None,
        },
        status_code=exc.status,
    )


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _render(
    request: Request, template: str, values: Mapping[str, Any], status_code: int = 200
) -> Response:
    nonce = request.cookies.get(CSRF_COOKIE, "")
    fresh = _NONCE.fullmatch(nonce) is None
    if fresh:
        nonce = secrets.token_urlsafe(24)
    ctx = context(request)
    who = signed_in(request) if ctx.api_keys else ""
    page = render(
        request,
        template,
        {
            "nav": True,
            "active": "",
            "root": _root(request),
            "csrf": _csrf_for(ctx, nonce),
            "who": who,
            "secured": bool(ctx.api_keys),
            **values,
        },
        status_code=status_code,
        headers=DASHBOARD_HEADERS,
    )
    if fresh:
        page.set_cookie(
            CSRF_COOKIE,
            nonce,
            path=f"{_root(request)}/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return page


async def _form(request: Request) -> dict[str, str]:
    try:
        form = await read_form(request, MAX_FORM_BYTES)
    except FormError as exc:
        raise PageError(exc.status, exc.heading, exc.line or "Use the dashboard's forms.") from None
    if not _csrf_ok(request, form):
        raise PageError(403, "This form has expired", "Reload the page and try again.")
    return form


# -- sign in and out -------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    ctx = context(request)
    return _render(
        request,
        "dash_login.html",
        {
            "page_title": "Sign in",
            "nav": False,
            "next": _safe_next(request.query_params.get("next")),
            "error": error,
            "no_secret": bool(ctx.api_keys) and not ctx.app.secret_key,
            "open": not ctx.api_keys,
        },
        status_code=status,
    )


async def login(request: Request) -> Response:
    ctx = context(request)
    try:
        form = await _form(request)
    except PageError as exc:
        return _message(request, exc)
    if not ctx.api_keys:
        return RedirectResponse(f"{_root(request)}/", 303)
    if not ctx.app.secret_key:
        return await login_page(request, error="Set DATAFLOWS_SECRET_KEY to sign in.", status=503)
    key = form.get("key", "").strip()
    if not key or not key_matches(key, [k.encode() for k in ctx.api_keys]):
        return await login_page(request, error="That key is not valid.", status=401)
    target = _safe_next(form.get("next"))
    response = RedirectResponse(f"{_root(request)}{target}", 303)
    response.set_cookie(
        SESSION_COOKIE,
        make_session(ctx, key, time.time()),
        max_age=SESSION_SECONDS,
        path=f"{_root(request)}/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    try:
        await _form(request)
    except PageError as exc:
        return _message(request, exc)
    response = RedirectResponse(f"{_root(request)}/login", 303)
    response.delete_cookie(SESSION_COOKIE, path=f"{_root(request)}/")
    return response


# -- formatting ---------------------------------------------------------------------------------------


def _when(value: datetime | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float | int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


_STATUS_SHAPES = {
    "queued": "○",
    "running": "◐",
    "waiting": "◷",
    "completed": "✓",
    "failed": "✕",
    "cancelled": "⊘",
    "retrying": "↻",
    "timed_out": "⌛",
}


def _status(status: str) -> dict[str, str]:
    return {"name": status, "shape": _STATUS_SHAPES.get(status, "•")}


def _run_row(run: Run) -> dict[str, Any]:
    took = None
    if run.completed_at is not None:
        took = (run.completed_at - run.created_at).total_seconds()
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": _status(run.status),
        "wait_reason": run.wait_reason,
        "event_name": run.event.name,
        "created": _when(run.created_at),
        "created_iso": _iso(run.created_at),
        "duration": _duration(took),
        "error": None if run.error is None else error_line(dict(run.error)),
    }


# -- what a live page shows, as a short signature (the stream says when it changes) --------------


def _signature(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def _rows_sig(rows: list[RunRow]) -> str:
    return _signature([(r.id, r.status, r.updated_at) for r in rows])


def _run_sig(run: Run) -> str:
    return _signature(
        (
            run.status,
            run.updated_at.timestamp(),
            [(s.key, s.status, s.attempts, len(s.attempt_errors)) for s in run.steps],
        )
    )


# -- the runs page ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFilters:
    workflow_id: str | None
    status: str | None
    since: float | None
    until: float | None
    before: tuple[float, str] | None

    def query(self, **changes: Any) -> str:
        values = {
            "workflow": self.workflow_id,
            "status": self.status,
            "since": None if self.since is None else _when(self.since).replace(" ", "T"),
            "until": None if self.until is None else _when(self.until).replace(" ", "T"),
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})


def _time_param(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PageError(
            400, f"The {name} time is not a date", "Use the form: 2026-01-31T14:00 (UTC)."
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _filters(params: Mapping[str, str]) -> RunFilters:
    workflow = params.get("workflow") or None
    if workflow is not None and not is_valid_id(workflow):
        raise PageError(400, "That workflow filter is not valid")
    status = params.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise PageError(
            400, "That status filter is not valid", f"Use one of {', '.join(RUN_STATUSES)}."
        )
    since = _time_param(params.get("since"), "from")
    until = _time_param(params.get("until"), "until")
    before = None
    cursor = params.get("after_run")
    if cursor:
        position, _, run_id = cursor.partition("~")
        try:
            created = float(position)
        except ValueError:
            created = math.nan
        if not math.isfinite(created) or not is_valid_id(run_id):
            raise PageError(400, "That page link is not valid", "Start again from the first page.")
        before = (created, run_id)
    elif until is not None:
        before = (until, "")
    return RunFilters(workflow, status, since, until, before)


async def _runs_page(
    ctx: ApiContext, filters: RunFilters
) -> tuple[list[RunRow], tuple[float, str] | None]:
    await ctx.store(ctx.app.open())
    rows = await ctx.store(
        ctx.app.store.list_runs(filters.workflow_id, filters.status, PAGE_SIZE + 1, filters.before)
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if filters.since is not None:
        kept = [row for row in rows if row.created_at >= filters.since]
        more = more and len(kept) == len(rows)
        rows = kept
    last = (rows[-1].created_at, rows[-1].id) if more and rows else None
    return rows, last


async def runs_index(request: Request) -> Response:
    ctx = context(request)
    params = request.query_params
    search = (params.get("q") or "").strip()
    if search:
        return await _search(request, ctx, search)
    filters = _filters(params)
    rows, last = await _runs_page(ctx, filters)
    return _render(
        request,
        "dash_runs.html",
        {
            "page_title": "Runs",
            "active": "runs",
            "runs": [_run_row(Run.from_row(row)) for row in rows],
            "workflows": sorted(w.id for w in ctx.app.registry),
            "statuses": RUN_STATUSES,
            "filters": filters,
            "since_value": params.get("since", ""),
            "until_value": params.get("until", ""),
            "next_query": None
            if last is None
            else filters.query(after_run=f"{last[0]!r}~{last[1]}"),
            "paged": filters.before is not None and params.get("after_run"),
            "stream": "runs?" + filters.query(after_run=params.get("after_run"), v=_rows_sig(rows)),
            "search": "",
        },
    )


async def _search(request: Request, ctx: ApiContext, text: str) -> Response:
    if not is_valid_id(text):
        raise PageError(400, "Search for a run id or an event id")
    await ctx.store(ctx.app.open())
    row = await ctx.store(ctx.app.store.get_run(text))
    if row is not None:
        return RedirectResponse(f"{_root(request)}/runs/{quote(text, safe='')}", 303)
    event = await ctx.store(ctx.app.store.get_event(text))
    if event is None:
        raise PageError(404, "Nothing found", f"No run and no event has the id {text}.")
    started = await ctx.store(ctx.app.store.runs_of_event(event.id, 50))
    return _render(
        request,
        "dash_event.html",
        {
            "page_title": f"Event {event.id}",
            "active": "runs",
            "runs": _event_runs(started),
            "event": {"id": event.id, "name": event.name, "ts": _when(event.ts)},
            "data_json": _pretty(event.data),
        },
    )


def _event_runs(found: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """The runs an event started or resumed, as the events pages list them."""
    return [
        {"id": r, "workflow_id": w, "status": _status(st), "how": how} for r, w, st, how in found
    ]


# -- a run ----------------------------------------------------------------------------------------------


def _waterfall(run: Run) -> dict[str, Any]:
    """The steps as bars on one time axis from the run's creation (inline SVG geometry)."""
    start = run.created_at
    end = run.completed_at or max(
        [s.completed_at or s.started_at or start for s in run.steps] + [run.updated_at]
    )
    total = max((end - start).total_seconds(), 0.001)
    width = 600.0
    bars = []
    for i, step in enumerate(run.steps):
        began = step.started_at or start
        done = step.completed_at or end
        x = max((began - start).total_seconds(), 0.0) / total * width
        w = max((done - began).total_seconds() / total * width, 2.0)
        bars.append(
            {
                "y": i * 22 + 4,
                "x": round(x, 1),
                "w": round(min(w, width - x + 2), 1),
                "status": step.status,
                "key": step.key,
            }
        )
    return {
        "bars": bars,
        "height": max(len(bars) * 22 + 8, 30),
        "width": width,
        "total": _duration(total),
    }


def _step_row(run: Run, step: StepInfo) -> dict[str, Any]:
    offset = None
    if step.started_at is not None:
        offset = (step.started_at - run.created_at).total_seconds()
    return {
        "key": step.key,
        "kind": step.kind,
        "status": _status(step.status),
        "attempts": step.attempts,
        "start": _duration(offset) if offset is not None else "",
        "duration": _duration(step.duration),
        "wake_at": _when(step.wake_at),
        "output_json": None if step.output is None else _pretty(step.output),
        "error": step.error,
        "attempt_errors": [
            {
                "attempt": a.attempt,
                "error": a.error,
                "failed_at": _when(a.failed_at),
                "retry_at": _when(a.retry_at),
            }
            for a in step.attempt_errors
        ],
    }


async def run_page(request: Request) -> Response:
    ctx = context(request)
    run_id: str = request.path_params["run_id"]
    if not is_valid_id(run_id):
        raise RunNotFound(run_id)
    run = await ctx.store(ctx.app.get_run(run_id))
    children = await _children(ctx, run)
    waits = await ctx.store(ctx.app.store.run_waits(run.id)) if not run.done else []
    awaited = next((w[2] for w in waits if w[2]), None) or _awaited_event(run)
    return _render(
        request,
        "dash_run.html",
        {
            "page_title": f"Run {run.id}",
            "active": "runs",
            "run": _run_row(run),
            "raw": run,
            "done": run.done,
            "updated": _when(run.updated_at),
            "completed": _when(run.completed_at),
            "wake_at": _when(run.wake_at),
            "event_json": _pretty(run.event.data),
            "event_ts": _when(run.event.ts),
            "result_json": None if run.result is None else _pretty(run.result),
            "error_json": run.error,
            "steps": [_step_row(run, s) for s in run.steps],
            "waterfall": _waterfall(run),
            "waits": [
                {
                    "step": key,
                    "kind": kind,
                    "event": event,
                    "match": _match_text(paths, values),
                    "until": _when(wake_at),
                }
                for key, kind, event, paths, values, wake_at in waits
            ],
            "children": children,
            "awaited": awaited,
            "can_cancel": not run.done,
            "can_retry": run.status in ("failed", "cancelled"),
            "stream": f"run?id={quote(run.id, safe='')}&v={_run_sig(run)}",
        },
    )


def _match_text(paths: str | None, values: str | None) -> str:
    """A wait's filter as ``data.id = 9``, from the paths and values stored as JSON text."""
    if not paths:
        return ""
    try:
        names, wanted = json.loads(paths), json.loads(values or "[]")
    except ValueError:
        return f"{paths} = {values}"
    if isinstance(names, list) and isinstance(wanted, list) and len(names) == len(wanted):
        return ", ".join(
            f"{name} = {json.dumps(value, ensure_ascii=False)}"
            for name, value in zip(names, wanted, strict=True)
        )
    return f"{paths} = {values}"


def _awaited_event(run: Run) -> str:
    """The event name a waiting run's wait reason names, if it names one."""
    reason = run.wait_reason or ""
    match = re.search(r"event[ :]+'?([A-Za-z0-9_.:/-]+)", reason)
    return match.group(1) if match else ""


async def _children(ctx: ApiContext, run: Run) -> list[dict[str, Any]]:
    """The runs this one invoked: an ``invoke`` step's child has an id made from the run's id
    and the step's key."""
    return [{"id": child_run_id(run.id, s.key)} for s in run.steps if s.kind == "invoke"][:100]


async def run_action(request: Request) -> Response:
    ctx = context(request)
    run_id: str = request.path_params["run_id"]
    action: str = request.path_params["action"]
    await _form(request)  # the CSRF check
    if not is_valid_id(run_id):
        raise RunNotFound(run_id)
    try:
        if action == "cancel":
            status = await ctx.store(ctx.app.cancel(run_id))
            if status != "cancelled":
                raise PageError(409, "The run cannot be cancelled now", f"It has {status}.")
        elif action == "retry":
            await ctx.store(ctx.app.retry(run_id))
        else:
            raise PageError(404, "No such action")
    except InvalidRunState as exc:
        raise PageError(
            409,
            f"The run cannot be {action}led now"
            if action == "cancel"
            else "The run cannot be retried now",
            str(exc),
        ) from None
    return RedirectResponse(f"{_root(request)}/runs/{quote(run_id, safe='')}", 303)


async def send_event(request: Request) -> Response:
    ctx = context(request)
    form = await _form(request)
    name = form.get("name", "").strip()
    if not name or len(name) > MAX_ID_LENGTH:
        raise PageError(400, "Name the event", "An event needs a name.")
    text = form.get("data", "").strip() or "{}"
    try:
        data = parse_json(text.encode())  # the API's rules: what the store can keep
    except ApiError as exc:
        raise PageError(400, "The data is not JSON the store can keep", exc.message) from None
    if not isinstance(data, dict):
        raise PageError(400, "The data must be a JSON object", 'Write it as {"key": value}.')
    try:
        await ctx.store(ctx.app.send(name, data))
    except (ValueError, TypeError, RecursionError) as exc:
        raise PageError(400, "The event was refused", str(exc)) from None
    return RedirectResponse(f"{_root(request)}{_safe_next(form.get('next'))}", 303)


# -- workflows ------------------------------------------------------------------------------------------


async def workflows_page(request: Request) -> Response:
    ctx = context(request)
    await ctx.store(ctx.app.open())
    held = await ctx.store(ctx.app.store.held_counts())
    counts = await ctx.store(ctx.app.store.run_counts())
    schedules = await ctx.store(ctx.app.store.list_schedules())
    now = ctx.app.clock.now()
    workflows = []
    for wf in sorted(ctx.app.registry, key=lambda w: w.id):
        wf_id = wf.id
        stats = await _workflow_stats(ctx, wf_id, now)
        triggers = []
        for t in wf.triggers:
            if isinstance(t, EventTrigger):
                triggers.append(f"event {t.name}")
            elif isinstance(t, CronTrigger):
                triggers.append(f"cron {t.expr} ({t.tz})")
            else:
                triggers.append(type(t).__name__)
        limits = []
        if wf.concurrency is not None:
            limits.append(f"concurrency {wf.concurrency.limit}")
        if wf.throttle is not None:
            limits.append(f"throttle {wf.throttle.limit} per {_duration(wf.throttle_period)}")
        if wf.rate_limit is not None:
            limits.append(f"rate limit {wf.rate_limit.limit} per {_duration(wf.rate_period)}")
        if wf.debounce is not None:
            limits.append("debounce")
        workflows.append(
            {
                "id": wf_id,
                "version": wf.version,
                "triggers": triggers,
                "limits": limits,
                "held": [(limit, n) for w, limit, n in held if w == wf_id],
                "counts": [(status, n) for w, status, n in counts if w == wf_id],
                "schedules": [
                    {"id": s.id, "expr": s.expr, "next": _when(s.next_at), "paused": s.paused}
                    for s in schedules
                    if s.workflow_id == wf_id
                ],
                **stats,
            }
        )
    return _render(
        request,
        "dash_workflows.html",
        {"page_title": "Workflows", "active": "workflows", "workflows": workflows},
    )


#: How many of a workflow's latest runs its statistics read (one indexed, bounded read).
STATS_SAMPLE = 500
#: The chart's span: runs started per minute over the last hour.
CHART_MINUTES = 60


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _workflow_stats(ctx: ApiContext, workflow_id: str, now: float) -> dict[str, Any]:
    """Durations, statuses, versions in flight and runs per minute of a workflow's latest
    runs (at most STATS_SAMPLE of them, plus up to 100 of each unfinished status)."""
    latest = await ctx.store(ctx.app.store.list_runs(workflow_id, None, STATS_SAMPLE))
    unfinished: list[RunRow] = []
    for status in ("running", "waiting", "queued"):
        unfinished += await ctx.store(ctx.app.store.list_runs(workflow_id, status, 100))
    durations = [
        r.completed_at - r.created_at
        for r in latest
        if r.status == "completed" and r.completed_at is not None
    ]
    by_status: dict[str, int] = {}
    for r in latest:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    versions: dict[str, int] = {}
    for r in unfinished:
        if r.version:
            versions[r.version] = versions.get(r.version, 0) + 1
    per_minute = [0] * CHART_MINUTES
    for r in latest:
        age = int((now - r.created_at) // 60)
        if 0 <= age < CHART_MINUTES:
            per_minute[CHART_MINUTES - 1 - age] += 1
    peak = max(per_minute) or 1
    bars = [
        {
            "x": i * 10,
            "h": round(n / peak * 60, 1),
            "y": round(70 - n / peak * 60, 1),
            "n": n,
            "ago": CHART_MINUTES - i,
        }
        for i, n in enumerate(per_minute)
    ]
    return {
        "sample": len(latest),
        "p50": _duration(_percentile(durations, 0.5)),
        "p95": _duration(_percentile(durations, 0.95)),
        "by_status": sorted(by_status.items()),
        "versions": sorted(versions.items()),
        "chart": bars,
        "chart_total": sum(per_minute),
        "chart_peak": max(per_minute),
    }


# -- approvals inbox ------------------------------------------------------------------------------------


async def inbox_page(request: Request) -> Response:
    ctx = context(request)
    pending = await ctx.store(ctx.app.pending_approvals(100))
    return _render(
        request,
        "dash_inbox.html",
        {
            "page_title": "Approvals",
            "active": "approvals",
            "approvals": [
                {
                    "id": a.id,
                    "run_id": a.run_id,
                    "workflow_id": a.workflow_id,
                    "title": a.title,
                    "approvers": list(a.approvers),
                    "created": _when(a.created_at),
                    "expires": _when(a.expires_at),
                }
                for a in pending
            ],
            "stream": "approvals?v=" + _signature([a.id for a in pending]),
        },
    )


async def decide_action(request: Request) -> Response:
    ctx = context(request)
    form = await _form(request)
    approval_id = form.get("approval", "")
    decision = form.get("decision")
    if not is_valid_id(approval_id) or decision not in ("approve", "reject"):
        raise PageError(400, "Choose Approve or Reject")
    pending = {a.id: a for a in await ctx.store(ctx.app.pending_approvals(500))}
    request_ = pending.get(approval_id)
    if request_ is None:
        raise PageError(409, "Already decided", "This approval is no longer pending.")
    ctx_ = context(request)
    who = session_identity(ctx_, request.cookies.get(SESSION_COOKIE), time.time())
    if request_.approvers and who not in request_.approvers:
        raise PageError(403, "You may not decide this request", "Only its named approvers may.")
    decided = await ctx.store(
        ctx.app.decide_approval(approval_id, decision == "approve", by=who, comment=None)
    )
    if not decided:
        raise PageError(409, "Already decided", "Someone decided it first.")
    return RedirectResponse(f"{_root(request)}/approvals/inbox", 303)


# -- live updates -------------------------------------------------------------------------------------


async def stream(request: Request) -> Response:
    """Server-sent events: ``change`` whenever what the page shows changed."""
    ctx = context(request)
    kind: str = request.path_params["kind"]
    params = request.query_params
    look: Callable[[], Awaitable[str]]
    if kind == "runs":
        filters = _filters(params)

        async def look_runs() -> str:
            rows, _ = await _runs_page(ctx, filters)
            return _rows_sig(rows)

        look = look_runs
    elif kind == "run":
        run_id = params.get("id", "")
        if not is_valid_id(run_id):
            raise RunNotFound(run_id)

        async def look_run() -> str:
            return _run_sig(await ctx.store(ctx.app.get_run(run_id)))

        look = look_run
    elif kind == "approvals":

        async def look_approvals() -> str:
            return _signature([a.id for a in await ctx.store(ctx.app.pending_approvals(100))])

        look = look_approvals
    else:
        raise PageError(404, "No such stream")

    async def events() -> AsyncIterator[bytes]:
        # What the page showed when it was rendered: a change since then is sent at once.
        seen = params.get("v")
        first = seen is None
        started = time.monotonic()
        yield b"retry: 1000\n\n"
        while time.monotonic() - started < STREAM_SECONDS and not ctx.stopping.is_set():
            if await request.is_disconnected():
                return
            now: str | None
            try:
                now = await look()
            except (StoreUnavailable, RunNotFound):
                now = seen
            if not first and now != seen:
                yield b"event: change\ndata: {}\n\n"
            seen, first = now, False
            with contextlib.suppress(TimeoutError):  # the next look, or the server stopping
                await asyncio.wait_for(ctx.stopping.wait(), STREAM_INTERVAL)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def stop_streams(api: Any) -> None:
    """End the live-update streams of ``api`` (from ``create_api``): a server stopping does not
    wait for the browsers' open streams (they reconnect to whichever server answers next)."""
    ctx = getattr(api.state, "dataflows", None)
    if isinstance(ctx, ApiContext):
        ctx.stopping.set()


# -- routing ------------------------------------------------------------------------------------------


def _negotiated(page: Handler, api: Handler) -> Handler:
    async def route(request: Request) -> Response:
        return await (page if wants_page(request.scope) else api)(request)

    return route


def routes(api_run: Handler, api_workflows: Handler) -> list[Route]:
    """The dashboard's routes; ``api_run`` and ``api_workflows`` answer the API's requests on
    the paths a page shares with the API."""
    return [
        Route("/", _page(runs_index), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", _page(events_page), methods=["GET"]),
        Route("/approvals/inbox", _page(inbox_page), methods=["GET"]),
        Route("/runs/{run_id}", _negotiated(_page(run_page), api_run), methods=["GET"]),
        Route("/workflows", _negotiated(_page(workflows_page), api_workflows), methods=["GET"]),
        Route(
            "/dashboard/runs/{run_id}/{action}", _page(run_action, action=True), methods=["POST"]
        ),
        Route("/dashboard/events", _page(send_event, action=True), methods=["POST"]),
        Route("/dashboard/approvals", _page(decide_action, action=True), methods=["POST"]),
        Route("/dashboard/stream/{kind}", _page(stream, action=True), methods=["GET"]),
    ]


async def events_page(request: Request) -> Response:
    """Send a test event; the runs it starts show on the runs page."""
    ctx = context(request)
    names = sorted(
        {t.name for wf in ctx.app.registry for t in wf.triggers if isinstance(t, EventTrigger)}
    )
    text = request.query_params.get("before", "")
    if text and not (text.isascii() and text.isdigit() and len(text) < 19):
        raise PageError(400, "That page link is not valid", "Start again from the first page.")
    await ctx.store(ctx.app.open())
    found = await ctx.store(
        ctx.app.store.recent_events(EVENTS_PAGE + 1, int(text) if text else None)
    )
    more = len(found) > EVENTS_PAGE
    found = found[:EVENTS_PAGE]
    events = []
    for _, event in found:
        started = await ctx.store(ctx.app.store.runs_of_event(event.id, 10))
        events.append(
            {
                "id": event.id,
                "name": event.name,
                "ts": _when(event.ts),
                "data_json": _pretty(event.data),
                "runs": _event_runs(started),
            }
        )
    rejected = await ctx.store(ctx.app.store.recent_webhook_rejections(REJECTIONS_SHOWN))
    rows, _ = await _runs_page(ctx, RunFilters(None, None, None, None, None))
    return _render(
        request,
        "dash_events.html",
        {
            "page_title": "Events",
            "active": "events",
            "event_names": names,
            "events": events,
            "older": found[-1][0] if more and found else None,
            "rejected": [
                {
                    "source": r.source,
                    "status": r.status,
                    "reason": r.reason,
                    "at": _when(r.received_at),
                    "body": r.body,
                    "body_bytes": r.body_bytes,
                }
                for r in rejected
            ],
            "paged": bool(text),
            "runs": [_run_row(Run.from_row(row)) for row in rows[:20]],
            "stream": "runs?v=" + _rows_sig(rows),
        },
    )
