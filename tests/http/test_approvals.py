"""Approval links: the confirmation page, the decision POST, single use, CSRF, the inbox."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

import dataflows as df
from dataflows.approvals import ApprovalLinks
from tests.engine.conftest import ManualClock, wait_status
from tests.http.conftest import BASE_URL, Harness

SECRET = "approval-test-secret"
TITLE = "Publish <script>alert(1)</script> & more?"


def approval_app(new_app: Callable[..., df.Dataflows], **options: Any) -> df.Dataflows:
    app = new_app(secret_key=SECRET, public_url=BASE_URL, **options)

    @app.workflow("publish")
    async def publish(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval(
            "approval",
            title=TITLE,
            details={"html": "<b>bold</b>", "n": event.data.get("n")},
            timeout="1h",
            approvers=event.data.get("approvers"),
        )
        decision = await step.wait_for_approval(req)
        if decision is None:
            return None
        return {"approved": decision.approved, "by": decision.by, "comment": decision.comment}

    return app


@asynccontextmanager
async def running(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows], **options: Any
) -> AsyncIterator[Harness]:
    api_keys = options.pop("api_keys", ())
    app = approval_app(new_app, **options)
    async with make_api(app=app, api_keys=api_keys) as h, app.worker(poll_interval=0.02):
        yield h


async def requested(h: Harness, data: dict[str, Any] | None = None) -> tuple[str, str]:
    """Start a run that asks for approval; its id and the path of its approve link."""
    run_id = await h.app.start("publish", data or {})
    run = await wait_status(h.app, run_id, "waiting")
    output = next(s.output for s in run.steps if s.key == "approval")
    request = df.ApprovalRequest.from_json(output)
    assert request is not None
    url = urlsplit(request.approve_url)
    return run_id, f"{url.path}?{url.query}"


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def test_the_page_shows_the_request_escaped_and_decides_nothing(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h, {"n": 1})
        for _ in range(2):  # a chat app previewing the link, then the human
            page = await h.client.get(link)
            assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text
        assert "Publish &lt;script&gt;alert(1)&lt;/script&gt; &amp; more?" in page.text
        assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
        assert "df-approve df-suggested" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "dataflows_csrf" in page.headers.get("set-cookie", "") or h.client.cookies
        assert (await h.app.get_run(run_id)).status == "waiting"
        assert len(await h.app.pending_approvals()) == 1
        css = await h.client.get("/static/dataflows.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_a_decision_works_once(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h)
        csrf = csrf_of(await h.client.get(link))
        form = {"csrf": csrf, "decision": "approve", "comment": "  ship it <now>  "}
        done = await h.client.post(link, data=form)
        assert done.status_code == 200, done.text
        assert "Approved" in done.text
        run = await h.app.wait_for_run(run_id, timeout=10)
        assert run.result == {"approved": True, "by": None, "comment": "ship it <now>"}
        again = await h.client.post(link, data={**form, "decision": "reject"})
        assert again.status_code == 409
        assert "Already decided" in again.text and "approved" in again.text
        assert (await h.client.get(link)).status_code == 409


async def test_concurrent_decisions_one_wins(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h)
        csrf = csrf_of(await h.client.get(link))
        answers = await asyncio.gather(
            *(
                h.client.post(link, data={"csrf": csrf, "decision": d})
                for d in ("approve", "reject", "approve", "reject")
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409, 409, 409], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200)
        run = await h.app.wait_for_run(run_id, timeout=10)
        assert run.result["approved"] is ("Approved" in winner.text)


async def test_posts_without_a_valid_csrf_token_are_refused(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h)
        # No page opened: no cookie, no token.
        bare = await h.client.post(link, data={"decision": "approve"})
        assert bare.status_code == 403
        csrf = csrf_of(await h.client.get(link))
        forged = await h.client.post(link, data={"csrf": csrf[:-2] + "xx", "decision": "approve"})
        assert forged.status_code == 403
        h.client.cookies.clear()
        no_cookie = await h.client.post(link, data={"csrf": csrf, "decision": "approve"})
        assert no_cookie.status_code == 403
        # A token for another link does not fit this one.
        _, other = await requested(h)
        other_csrf = csrf_of(await h.client.get(other))
        crossed = await h.client.post(link, data={"csrf": other_csrf, "decision": "approve"})
        assert crossed.status_code == 403
        assert (await h.app.get_run(run_id)).status == "waiting"


async def test_tampered_unknown_and_expired_links_are_refused(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    clock = ManualClock()
    async with running(make_api, new_app, clock=clock) as h:
        run_id, link = await requested(h)
        path = link.split("?")[0]
        token = path.rsplit("/", 1)[1]
        payload, signature = token.split(".")
        tampered = await h.client.get(f"/approvals/{payload}.{signature[:-3]}AAA")
        assert tampered.status_code == 403
        assert (await h.client.get("/approvals/not-a-token")).status_code == 404
        assert (await h.client.get("/approvals/" + "a" * 5000)).status_code == 404
        links = ApprovalLinks(SECRET, BASE_URL)
        unknown = links.token(run_id, "0" * 32, clock.now() + 60)
        assert (await h.client.get(f"/approvals/{unknown}")).status_code == 404
        no_run = links.token("f" * 32, "0" * 32, clock.now() + 60)
        assert (await h.client.get(f"/approvals/{no_run}")).status_code == 404
        other_key = ApprovalLinks("another-secret", BASE_URL).token(run_id, "0" * 32, 1e10)
        assert (await h.client.get(f"/approvals/{other_key}")).status_code == 403
        csrf = csrf_of(await h.client.get(link))
        clock.advance(3601)
        expired = await h.client.get(link)
        assert expired.status_code == 410 and "expired" in expired.text
        late = await h.client.post(link, data={"csrf": csrf, "decision": "approve"})
        assert late.status_code == 410
        run = await h.app.wait_for_run(run_id, timeout=10)
        assert run.result is None


async def test_malformed_forms_get_a_clear_page(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h)
        csrf = csrf_of(await h.client.get(link))
        form = "application/x-www-form-urlencoded"
        cases: list[tuple[bytes, str, int]] = [
            (b'{"decision": "approve"}', "application/json", 415),
            (b"csrf=\xff\xfe&decision=approve", form, 400),
            (b"%%%", form, 400),
            (f"csrf={csrf}&decision=approve&decision=reject".encode(), form, 400),
            (f"csrf={csrf}&decision=maybe".encode(), form, 400),
            (f"csrf={csrf}".encode(), form, 400),
            (f"csrf={csrf}&decision=approve&comment={'x' * 3000}".encode(), form, 400),
            (b"csrf=" + b"x" * 20_000, form, 413),
        ]
        for body, content_type, status in cases:
            answer = await h.client.post(link, content=body, headers={"content-type": content_type})
            assert answer.status_code == status, (body[:40], answer.text)
            assert answer.headers["content-type"].startswith("text/html")
        assert (await h.app.get_run(run_id)).status == "waiting"


async def test_approvers_must_sign_in_with_their_key(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    keys = ["alice:alice-key", "bob:bob-key", "anonymous-key"]
    async with running(make_api, new_app, api_keys=keys) as h:
        run_id, link = await requested(h, {"approvers": ["alice"]})
        assert (await h.client.get(link)).status_code == 401
        bob = {"Authorization": "Bearer bob:bob-key"}
        assert (await h.client.get(link, headers=bob)).status_code == 403
        anonymous = {"Authorization": "Bearer anonymous-key"}
        assert (await h.client.get(link, headers=anonymous)).status_code == 401
        wrong = {"Authorization": "Bearer alice:not-her-key"}
        assert (await h.client.get(link, headers=wrong)).status_code == 401
        alice = {"Authorization": "Bearer alice:alice-key"}
        page = await h.client.get(link, headers=alice)
        assert page.status_code == 200 and "Signed in as" in page.text
        form = {"csrf": csrf_of(page), "decision": "reject"}
        assert (await h.client.post(link, data=form, headers=bob)).status_code == 403
        done = await h.client.post(link, data=form, headers=alice)
        assert done.status_code == 200, done.text
        run = await h.app.wait_for_run(run_id, timeout=10)
        assert run.result == {"approved": False, "by": "alice", "comment": None}


async def test_the_inbox_lists_pending_approvals_behind_the_keys(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with running(make_api, new_app, api_keys=["ops:k1"]) as h:
        auth = {"Authorization": "Bearer ops:k1"}
        assert (await h.client.get("/approvals")).status_code == 401
        empty = await h.client.get("/approvals?status=pending", headers=auth)
        assert empty.json() == {"approvals": []}
        run_id, link = await requested(h)
        listed = (await h.client.get("/approvals", headers=auth)).json()["approvals"]
        assert [(a["run_id"], a["workflow_id"], a["title"]) for a in listed] == [
            (run_id, "publish", TITLE)
        ]
        assert listed[0]["expires_at"].endswith("Z") and listed[0]["step"] == "approval"
        for query in ("status=done", "limit=0", "limit=x", "other=1"):
            answer = await h.client.get(f"/approvals?{query}", headers=auth)
            assert answer.status_code == 422, query
        # The page itself needs no key: the signed link is the credential.
        page = await h.client.get(link)
        assert page.status_code == 200
        done = await h.client.post(link, data={"csrf": csrf_of(page), "decision": "approve"})
        assert done.status_code == 200
        await h.app.wait_for_run(run_id, timeout=10)
        assert (await h.client.get("/approvals", headers=auth)).json() == {"approvals": []}


async def test_a_server_without_a_secret_key_says_so(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app()
    app.secret_key = None
    async with make_api(app=app) as h:
        page = await h.client.get("/approvals/abc.def")
        assert page.status_code == 503 and "not set up" in page.text


async def test_a_database_outage_is_a_503_page(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows], monkeypatch: Any
) -> None:
    async with running(make_api, new_app) as h:
        run_id, link = await requested(h)
        csrf = csrf_of(await h.client.get(link))

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise df.StoreUnavailable("the database is away")

        monkeypatch.setattr(h.app, "decide_approval", unavailable)
        posted = await h.client.post(link, data={"csrf": csrf, "decision": "approve"})
        assert posted.status_code == 503 and "Try again" in posted.text
        monkeypatch.setattr(h.app, "get_approval", unavailable)
        page = await h.client.get(link)
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert (await h.app.get_run(run_id)).status == "waiting"
