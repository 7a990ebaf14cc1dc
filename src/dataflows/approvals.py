"""Human approvals: the request a run records, the signed links it hands out, the decision.

``step.request_approval`` records an :class:`ApprovalRequest` (a step, so replays return the same
id, links and expiry); ``step.wait_for_approval`` waits for the internal event
:data:`DECIDED_EVENT` whose ``data.approval_id`` is the request's id; the HTTP API's confirmation
page sends that event once, under the id :func:`decision_event_id` (a second decision is a
duplicate event: nothing is written).

A link carries a token: ``base64url(run id, approval id, expiry) "." base64url(HMAC-SHA256)``,
signed with the app's secret key. The CSRF token of a confirmation page is an HMAC of the link
token and a random nonce kept in a cookie (see :meth:`ApprovalLinks.csrf_token`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from dataflows.errors import DataflowsError

__all__ = [
    "DECIDED_EVENT",
    "Approval",
    "ApprovalLinks",
    "ApprovalRequest",
    "ApprovalState",
    "InvalidApprovalLink",
    "LinkClaims",
    "MissingSetting",
    "decision_event_id",
]

#: The internal event a decision is sent as (``data.approval_id`` names the request).
DECIDED_EVENT = "dataflows/approval.decided"
#: ``type`` of a recorded request's output, which tells it apart from other steps' outputs.
REQUEST_TYPE = "dataflows/approval"
#: The longest link token accepted (a real one is about 140 characters).
MAX_TOKEN_LENGTH = 512
#: The longest comment a decision keeps, in characters.
MAX_COMMENT_LENGTH = 2000

_LINK = b"dataflows approval link\x00"
_CSRF = b"dataflows approval csrf\x00"


class MissingSetting(DataflowsError, ValueError):
    """A feature needs a setting the app does not have (a secret key, a public URL)."""

    code = "missing_setting"


class InvalidApprovalLink(DataflowsError, ValueError):
    """An approval link that is malformed, tampered with, or expired (``reason``)."""

    code = "invalid_approval_link"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decision_event_id(approval_id: str) -> str:
    """The id of the decision event: one per approval, so a second decision is a duplicate."""
    return f"{DECIDED_EVENT}:{approval_id}"


@dataclass(frozen=True, slots=True)
class Approval:
    """A human's decision: what ``step.wait_for_approval`` returns (``None`` on timeout)."""

    approved: bool
    #: Who decided: the signed-in identity (an API key's name), else ``None``.
    by: str | None
    comment: str | None
    at: datetime

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> Approval:
        return cls(
            approved=data.get("approved") is True,
            by=data.get("by"),
            comment=data.get("comment"),
            at=datetime.fromtimestamp(float(data["at"]), UTC),
        )


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What ``step.request_approval`` returns: recorded once, the same on every replay."""

    id: str
    run_id: str
    workflow_id: str
    #: The step key the request was recorded under.
    key: str
    title: str
    details: Any
    #: Who may decide (identities of API keys); empty: anyone holding the link.
    approvers: tuple[str, ...]
    created_at: float
    expires_at: float
    approve_url: str
    reject_url: str

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": REQUEST_TYPE,
            "id": self.id,
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "key": self.key,
            "title": self.title,
            "details": self.details,
            "approvers": list(self.approvers),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "approve_url": self.approve_url,
            "reject_url": self.reject_url,
        }

    @classmethod
    def from_json(cls, data: Any) -> ApprovalRequest | None:
        """The request recorded as ``data``, or ``None`` if ``data`` is not one."""
        if not isinstance(data, dict) or data.get("type") != REQUEST_TYPE:
            return None
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError):  # a step output that only looks like one
            return None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(
            id=str(data["id"]),
            run_id=str(data["run_id"]),
            workflow_id=str(data["workflow_id"]),
            key=str(data["key"]),
            title=str(data["title"]),
            details=data.get("details"),
            approvers=tuple(str(a) for a in data.get("approvers") or ()),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            approve_url=str(data["approve_url"]),
            reject_url=str(data["reject_url"]),
        )


@dataclass(frozen=True, slots=True)
class ApprovalState:
    """A request as it stands: its run's status, and its decision if there is one."""

    request: ApprovalRequest
    run_status: str
    decision: Approval | None


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a valid link token says: which run and approval, until when."""

    run_id: str
    approval_id: str
    expires_at: float


class ApprovalLinks:
    """Signs and verifies approval links and the CSRF tokens of their confirmation pages."""

    def __init__(self, secret_key: str | None, public_url: str | None) -> None:
        if not secret_key:
            raise MissingSetting(
                "approval links are signed with the app's secret key: set DATAFLOWS_SECRET_KEY "
                "(or Dataflows(secret_key=...)) to a long random string"
            )
        self._key = hashlib.sha256(secret_key.encode("utf-8")).digest()
        self.public_url = public_url.rstrip("/") if public_url else None

    # -- links ---------------------------------------------------------------------------------

    def token(self, run_id: str, approval_id: str, expires_at: float) -> str:
        payload = "\n".join((run_id, approval_id, str(int(expires_at)))).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._sign(_LINK, payload))}"

    def urls(self, token: str) -> tuple[str, str]:
        """The approve and reject URLs of a link token (both open the same confirmation page)."""
        if not self.public_url:
            raise MissingSetting(
                "approval links need the URL the HTTP API is reached at: set "
                "DATAFLOWS_PUBLIC_URL (or Dataflows(public_url=...)), e.g. https://flows.example.com"
            )
        page = f"{self.public_url}/approvals/{quote(token, safe='')}"
        return f"{page}?decision=approve", f"{page}?decision=reject"

    def verify(self, token: str, now: float) -> LinkClaims:
        """The claims of ``token``; :class:`InvalidApprovalLink` if it is malformed, was not
        signed with this key, or has expired."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidApprovalLink("malformed", "this is not an approval link")
        encoded, signature = token.split(".")
        try:
            payload = _unb64(encoded)
            given = _unb64(signature)
        except (ValueError, binascii.Error):
            raise InvalidApprovalLink("malformed", "this is not an approval link") from None
        if not hmac.compare_digest(given, self._sign(_LINK, payload)):
            raise InvalidApprovalLink("tampered", "this approval link is not valid")
        try:
            run_id, approval_id, expires = payload.decode("utf-8").split("\n")
            expires_at = float(int(expires))
        except ValueError:
            raise InvalidApprovalLink("malformed", "this is not an approval link") from None
        if now >= expires_at:
            raise InvalidApprovalLink("expired", "this approval link has expired")
        return LinkClaims(run_id, approval_id, expires_at)

    # -- CSRF ------------------------------------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, token: str, nonce: str) -> str:
        """The form field a confirmation page carries: an HMAC of the link token and the
        browser's nonce (a cookie). A POST is accepted only with both, and they must agree: a
        page of another site can neither read the cookie nor compute the HMAC."""
        message = f"{token}\n{nonce}".encode()
        return _b64(self._sign(_CSRF, message))

    def check_csrf(self, token: str, nonce: str | None, value: str | None) -> bool:
        if not nonce or not value or len(nonce) > 100 or len(value) > 100:
            return False
        return hmac.compare_digest(value.encode("utf-8"), self.csrf_token(token, nonce).encode())

    def _sign(self, purpose: bytes, message: bytes) -> bytes:
        return hmac.new(self._key, purpose + message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text) or not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
