"""Approval link tokens and CSRF tokens: signed, bound, expiring; recorded requests read back."""

from __future__ import annotations

import pytest

from dataflows.approvals import (
    ApprovalLinks,
    ApprovalRequest,
    InvalidApprovalLink,
    MissingSetting,
)

NOW = 1_800_000_000.0
LINKS = ApprovalLinks("a secret key", "https://flows.example.com/")


def reason(token: str, now: float = NOW, links: ApprovalLinks = LINKS) -> str:
    with pytest.raises(InvalidApprovalLink) as caught:
        links.verify(token, now)
    return caught.value.reason


def test_a_token_verifies_until_it_expires() -> None:
    token = LINKS.token("run-1", "appr-1", NOW + 60)
    claims = LINKS.verify(token, NOW)
    assert (claims.run_id, claims.approval_id, claims.expires_at) == ("run-1", "appr-1", NOW + 60)
    assert LINKS.verify(token, NOW + 59.9) == claims
    assert reason(token, NOW + 60) == "expired"


def test_urls_use_the_public_url() -> None:
    approve, reject = LINKS.urls("tok.sig")
    assert approve == "https://flows.example.com/approvals/tok.sig?decision=approve"
    assert reject == "https://flows.example.com/approvals/tok.sig?decision=reject"
    with pytest.raises(MissingSetting, match="DATAFLOWS_PUBLIC_URL"):
        ApprovalLinks("k", None).urls("t")
    with pytest.raises(MissingSetting, match="DATAFLOWS_SECRET_KEY"):
        ApprovalLinks(None, "https://x")


def test_tampering_is_detected() -> None:
    token = LINKS.token("run-1", "appr-1", NOW + 60)
    payload, signature = token.split(".")
    other = LINKS.token("run-2", "appr-1", NOW + 60).split(".")[0]
    longer = LINKS.token("run-1", "appr-1", NOW + 99999).split(".")[0]
    assert reason(f"{other}.{signature}") == "tampered"  # another run
    assert reason(f"{longer}.{signature}") == "tampered"  # a later expiry
    assert reason(f"{payload}.{signature[::-1]}") == "tampered"
    assert reason(token, links=ApprovalLinks("another key", None)) == "tampered"


@pytest.mark.parametrize(
    "token", ["", ".", "abc", "a.b.c", "é.x", "a b.c", "!!.??", "x" * 600 + ".y", "YQ.YQ"]
)
def test_malformed_tokens(token: str) -> None:
    assert reason(token) in {"malformed", "tampered"}


def test_csrf_tokens_are_bound_to_link_and_nonce() -> None:
    token = LINKS.token("run-1", "appr-1", NOW + 60)
    nonce = LINKS.new_nonce()
    csrf = LINKS.csrf_token(token, nonce)
    assert LINKS.check_csrf(token, nonce, csrf)
    assert not LINKS.check_csrf(token, LINKS.new_nonce(), csrf)
    assert not LINKS.check_csrf(LINKS.token("run-1", "appr-2", NOW + 60), nonce, csrf)
    assert not LINKS.check_csrf(token, None, csrf)
    assert not LINKS.check_csrf(token, nonce, None)
    assert not LINKS.check_csrf(token, nonce, "")
    assert not ApprovalLinks("another key", None).check_csrf(token, nonce, csrf)


def test_a_recorded_request_reads_back_and_look_alikes_do_not() -> None:
    request = ApprovalRequest(
        "id", "run", "wf", "approval", "t", {"a": 1}, ("ana",), NOW, NOW + 60, "u1", "u2"
    )
    assert ApprovalRequest.from_json(request.to_json()) == request
    assert ApprovalRequest.from_json({"type": "dataflows/approval"}) is None
    assert ApprovalRequest.from_json({**request.to_json(), "expires_at": "soon"}) is None
    assert ApprovalRequest.from_json([1, 2]) is None
    assert ApprovalRequest.from_json({**request.to_json(), "type": "other"}) is None
