"""Approval links and the approvals inbox.

``GET /approvals/{token}`` shows a confirmation page and decides nothing (chat apps fetch links
to preview them). The decision is the page's ``POST`` to the same URL, carrying a CSRF token:
an HMAC of the link token and a random nonce the page set as a cookie; a page of another site
can neither read the cookie nor compute the HMAC. The decision is stored once
(``app.decide_approval``): a second one, concurrent or later, is refused with 409.

``GET /approvals?status=pending`` (behind the API's keys) lists the approvals runs wait for.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dataflows.approvals import (
    MAX_COMMENT_LENGTH,
    ApprovalLinks,
    ApprovalRequest,
    ApprovalState,
    InvalidApprovalLink,
    LinkClaims,
    MissingSetting,
)
from dataflows.errors import StoreUnavailable
from dataflows.http.auth import bearer_token, identity
from dataflows.http.context import ApiContext, context
from dataflows.http.dashboard import SESSION_COOKIE, session_identity
from dataflows.http.errors import ApiError
from dataflows.http.pages import FormError, read_form, render
from dataflows.http.responses import JsonResponse

__all__ = ["approval_page", "decide", "list_approvals"]

#: The cookie holding the browser's CSRF nonce (HttpOnly, SameSite=Lax).
CSRF_COOKIE = "dataflows_csrf"
#: The largest decision form accepted, in bytes (a comment of MAX_COMMENT_LENGTH characters fits).
MAX_FORM_BYTES = 16 * 1024
#: The most approvals one inbox answer lists.
MAX_INBOX = 500

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_LIVE = ("queued", "running", "waiting")


class PageError(Exception):
    """Answered with a message page."""

    def __init__(
        self, status: int, heading: str, *lines: str, request: ApprovalRequest | None = None
    ) -> None:
        super().__init__(heading)
        self.status, self.heading, self.lines, self.request = status, heading, lines, request


# -- the confirmation page ----------------------------------------------------------------------


async def approval_page(request: Request) -> Response:
    try:
        links, token, _, state = await _approval(request)
        signed_in = _check_approver(request, state.request)
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = _NONCE.fullmatch(nonce) is None
        if fresh:
            nonce = links.new_nonce()
        suggested = request.query_params.get("decision")
        details = state.request.details
        page = render(
            request,
            "approval.html",
            {
                "page_title": state.request.title,
                "request": state.request,
                "created_iso": _iso(state.request.created_at),
                "created_text": _when(state.request.created_at),
                "expires_iso": _iso(state.request.expires_at),
                "expires_text": _when(state.request.expires_at),
                "details_json": None if details is None else _pretty(details),
                "csrf": links.csrf_token(token, nonce),
                "suggested": suggested if suggested in ("approve", "reject") else None,
                "signed_in": signed_in,
                "max_comment": MAX_COMMENT_LENGTH,
            },
        )
        if fresh:
            _set_nonce(request, page, nonce)
        return page
    except PageError as exc:
        return _message(request, exc)


async def decide(request: Request) -> Response:
    try:
        links, token, _, state = await _approval(request)
        form = await _form(request)
        if not links.check_csrf(token, request.cookies.get(CSRF_COOKIE), form.get("csrf")):
            raise PageError(
                403,
                "This form has expired",
                "Open the approval link again and decide from the page it shows.",
                request=state.request,
            )
        by = _check_approver(request, state.request)
        decision = form.get("decision")
        if decision not in ("approve", "reject"):
            raise PageError(400, "Choose Approve or Reject", request=state.request)
        comment = (form.get("comment") or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_LENGTH:
            raise PageError(
                400,
                "The comment is too long",
                f"Keep it to {MAX_COMMENT_LENGTH} characters.",
                request=state.request,
            )
        if by is None:
            by = _signed_in(request)
        ctx = context(request)
        decided = await _stored(
            ctx,
            ctx.app.decide_approval(
                state.request.id, decision == "approve", by=by, comment=comment
            ),
        )
        if not decided:
            raise _already_decided(state.request, None)
        approved = decision == "approve"
        return render(
            request,
            "message.html",
            {
                "page_title": "Approved" if approved else "Rejected",
                "tone": "ok" if approved else "bad",
                "heading": "Approved" if approved else "Rejected",
                "lines": ["Your decision was recorded. The workflow continues."],
                "title": state.request.title,
            },
        )
    except PageError as exc:
        return _message(request, exc)


async def _approval(request: Request) -> tuple[ApprovalLinks, str, LinkClaims, ApprovalState]:
    """The link's signer, token, claims and the request as it stands; a :class:`PageError` for
    a link that is not (or no longer) good."""
    ctx = context(request)
    token: str = request.path_params["token"]
    try:
        links = ctx.app.approval_links()
    except MissingSetting:
        raise PageError(
            503,
            "Approvals are not set up",
            "This server has no secret key to check approval links with.",
        ) from None
    try:
        claims = links.verify(token, ctx.app.clock.now())
    except InvalidApprovalLink as exc:
        status, heading = {
            "expired": (410, "This approval link has expired"),
            "tampered": (403, "This approval link is not valid"),
        }.get(exc.reason, (404, "This is not an approval link"))
        raise PageError(
            status, heading, "Ask for a new link if a decision is still needed."
        ) from None
    state = await _stored(ctx, ctx.app.get_approval(claims.run_id, claims.approval_id))
    if state is None:
        raise PageError(404, "No such approval", "The run that asked for it is gone.")
    if state.decision is not None:
        raise _already_decided(state.request, state)
    if state.run_status not in _LIVE:
        raise PageError(
            410,
            "This approval is no longer needed",
            f"The run that asked for it has {state.run_status}.",
            request=state.request,
        )
    return links, token, claims, state


def _already_decided(request: ApprovalRequest, state: ApprovalState | None) -> PageError:
    decision = None if state is None else state.decision
    if decision is None:
        return PageError(409, "Already decided", "This approval link was used already.")
    verdict = "approved" if decision.approved else "rejected"
    who = f" by {decision.by}" if decision.by else ""
    return PageError(
        409,
        "Already decided",
        f"This request was {verdict}{who} on {_when(decision.at.timestamp())}.",
        "An approval link works once.",
        request=request,
    )


def _check_approver(request: Request, approval: ApprovalRequest) -> str | None:
    """The signed-in identity when the request names approvers (refused otherwise)."""
    if not approval.approvers:
        return None
    who = _signed_in(request)
    if who is None:
        raise PageError(
            401,
            "Sign in to decide",
            "Only named approvers may decide this request: sign in to the dashboard with "
            "your API key, or send it (Authorization: Bearer name:key).",
            request=approval,
        )
    if who not in approval.approvers:
        raise PageError(
            403, "You may not decide this request", f"Signed in as {who}.", request=approval
        )
    return who


def _signed_in(request: Request) -> str | None:
    """The identity of the API key sent, else of the dashboard session (see dashboard.py)."""
    ctx = context(request)
    if not ctx.api_keys:
        return None
    token = bearer_token(request.scope)
    if token is not None:
        return identity(token, ctx.api_keys)
    return session_identity(ctx, request.cookies.get(SESSION_COOKIE), time.time())


async def _form(request: Request) -> dict[str, str]:
    """The decision form: urlencoded, small, each field once."""
    try:
        return await read_form(request, MAX_FORM_BYTES)
    except FormError as exc:
        raise PageError(
            exc.status, exc.heading, exc.line or "Decide from the approval page."
        ) from None


async def _stored(ctx: ApiContext, operation: Any) -> Any:
    try:
        return await ctx.store(operation)
    except StoreUnavailable:
        raise PageError(
            503,
            "Try again in a moment",
            "The database did not answer in time. Open the link again to see where it stands.",
        ) from None


def _set_nonce(request: Request, response: Response, nonce: str) -> None:
    root = request.scope.get("root_path", "")
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        path=f"{root}/approvals/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _message(request: Request, exc: PageError) -> Response:
    tone = "bad" if exc.status in (401, 403, 404) or exc.status >= 500 else "warn"
    return render(
        request,
        "message.html",
        {
            "page_title": exc.heading,
            "tone": tone,
            "heading": exc.heading,
            "lines": exc.lines,
            "title": None if exc.request is None else exc.request.title,
        },
        status_code=exc.status,
    )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- the inbox -------------------------------------------------------------------------------------


async def list_approvals(request: Request) -> Response:
    """``GET /approvals?status=pending&limit=100``: approvals runs wait for, oldest first."""
    params = request.query_params
    unknown = set(params) - {"status", "limit"}
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown query parameter {sorted(unknown)[0]!r}")
    if params.get("status", "pending") != "pending":
        raise ApiError(422, "invalid_request", "status must be 'pending'")
    text = params.get("limit", "100")
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_INBOX):
        raise ApiError(422, "invalid_request", f"limit must be an integer from 1 to {MAX_INBOX}")
    ctx = context(request)
    pending = await ctx.store(ctx.app.pending_approvals(int(text)))
    return JsonResponse({"approvals": [_inbox_item(r) for r in pending]})


def _inbox_item(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "run_id": request.run_id,
        "workflow_id": request.workflow_id,
        "step": request.key,
        "title": request.title,
        "approvers": list(request.approvers),
        "created_at": _iso(request.created_at),
        "expires_at": _iso(request.expires_at),
    }
