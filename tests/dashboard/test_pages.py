"""The dashboard's pages in-process: sign-in, CSRF, the pages, bad input, escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx

import dataflows as df
from dataflows.http.dashboard import SESSION_COOKIE
from tests.engine.conftest import wait_status
from tests.http.conftest import Harness

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SECRET = "dashboard-test-secret"
KEY = "alice:alice-key"
PAGES = ["/", "/workflows", "/events", "/approvals/inbox", "/runs/some-run"]
ACTIONS = [
    "/dashboard/runs/some-run/cancel",
    "/dashboard/runs/some-run/retry",
    "/dashboard/events",
    "/dashboard/approvals",
]


@asynccontextmanager
async def dashboard(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows], **options: Any
) -> AsyncIterator[Harness]:
    app = new_app(secret_key=SECRET)

    @app.workflow("shouts", trigger=df.on_event("shout"), retries=0)
    async def shouts(event: df.Event, step: df.Step) -> Any:
        def fail() -> None:
            raise ValueError(f"<script>alert({event.data.get('n')})</script>")

        await step.run("fail", fail)

    async with make_api(app=app, dashboard=True, **options) as h, app.worker(poll_interval=0.02):
        yield h


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(h: Harness, key: str = KEY) -> httpx.Response:
    csrf = csrf_of(await h.client.get("/login", headers=HTML))
    return await h.client.post("/login", data={"csrf": csrf, "key": key, "next": "/workflows"})


async def test_open_dashboard_pages_and_the_api_beside_them(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app) as h:
        run_id = await h.app.start("shouts", {"n": 1})
        await wait_status(h.app, run_id, "failed")
        runs = await h.client.get("/", headers=HTML)
        assert runs.status_code == 200 and run_id in runs.text
        assert "script-src 'self'" in runs.headers["content-security-policy"]
        page = await h.client.get(f"/runs/{run_id}", headers=HTML)
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "Traceback" in page.text and "Retry run" in page.text
        # The API answers on the same paths for API clients.
        api = await h.client.get(f"/runs/{run_id}")
        assert api.headers["content-type"].startswith("application/json")
        assert (await h.client.get("/workflows")).json()["workflows"]
        html = await h.client.get("/workflows", headers=HTML)
        assert html.status_code == 200 and "shouts" in html.text
        assert "1 failed" in html.text and "Runs started per minute" in html.text
        assert "<rect" in html.text and "1 run(s)" in html.text
        for path in ("/events", "/approvals/inbox", "/?status=failed&workflow=shouts"):
            assert (await h.client.get(path, headers=HTML)).status_code == 200, path
        js = await h.client.get("/static/dashboard.js")
        assert js.status_code == 200 and "EventSource" in js.text


async def test_retry_and_cancel_need_the_csrf_token(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app) as h:
        run_id = await h.app.start("shouts", {"n": 2})
        await wait_status(h.app, run_id, "failed")
        bare = await h.client.post(f"/dashboard/runs/{run_id}/retry", data={"x": "1"})
        assert bare.status_code == 403 and "expired" in bare.text
        page = await h.client.get(f"/runs/{run_id}", headers=HTML)
        forged = await h.client.post(
            f"/dashboard/runs/{run_id}/retry", data={"csrf": csrf_of(page)[:-3] + "abc"}
        )
        assert forged.status_code == 403
        assert (await h.app.get_run(run_id)).status == "failed"
        retried = await h.client.post(
            f"/dashboard/runs/{run_id}/retry", data={"csrf": csrf_of(page)}
        )
        assert retried.status_code == 303
        await wait_status(h.app, run_id, "failed")  # it fails again, the step runs again
        again = await h.client.post(
            f"/dashboard/runs/{run_id}/cancel", data={"csrf": csrf_of(page)}
        )
        assert again.status_code == 409


async def test_bad_input_gets_a_page_never_a_500(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app) as h:
        page = await h.client.get("/events", headers=HTML)
        csrf = csrf_of(page)
        cases = [
            (await h.client.get("/runs/no-such-run", headers=HTML), 404),
            (await h.client.get("/runs/" + "x" * 5000, headers=HTML), 404),
            (await h.client.get("/?status=bogus", headers=HTML), 400),
            (await h.client.get("/?since=yesterday", headers=HTML), 400),
            (await h.client.get("/?after_run=nan~x", headers=HTML), 400),
            (await h.client.get("/?q=nothing-here", headers=HTML), 404),
            (await h.client.get("/dashboard/stream/nope"), 404),
            (
                await h.client.post(
                    "/dashboard/events", data={"csrf": csrf, "name": "shout", "data": "[1, 2]"}
                ),
                400,
            ),
            (
                await h.client.post(
                    "/dashboard/events", data={"csrf": csrf, "name": "shout", "data": "{nope"}
                ),
                400,
            ),
            (
                await h.client.post(
                    "/dashboard/events", data={"csrf": csrf, "name": "x", "data": "y" * 100_000}
                ),
                413,
            ),
            (
                await h.client.post(
                    "/dashboard/events",
                    data={
                        "csrf": csrf,
                        "name": "shout",
                        "data": '{"a": ' + "[" * 8_000 + "]" * 8_000 + "}",
                    },
                ),
                400,
            ),
            (
                await h.client.post(
                    "/dashboard/events",
                    data={
                        "csrf": csrf,
                        "name": "shout",
                        "data": '{"a": ' + "[" * 900 + "]" * 900 + "}",
                    },
                ),
                400,
            ),
            (
                await h.client.post(
                    "/dashboard/events", data={"csrf": csrf, "name": "dataflows/x", "data": "{}"}
                ),
                400,
            ),
            (
                await h.client.post(
                    "/dashboard/events",
                    content=b'{"name": "shout"}',
                    headers={"Content-Type": "application/json"},
                ),
                415,
            ),
        ]
        for answer, status in cases:
            assert answer.status_code == status, (answer.request.url, answer.text)
            assert answer.headers["content-type"].startswith("text/html")
        sent = await h.client.post(
            "/dashboard/events",
            data={"csrf": csrf, "name": "shout", "data": '{"n": "<script>x</script>"}'},
        )
        assert sent.status_code == 303
        runs = await h.client.get("/", headers=HTML)
        assert "<script>x" not in runs.text


async def test_with_api_keys_everything_needs_a_session(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app, api_keys=[KEY, "unnamed-key"]) as h:
        for path in PAGES:
            answer = await h.client.get(path, headers=HTML)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=")
        for path in ACTIONS:
            assert (await h.client.post(path, data={})).status_code == 401, path
        assert (await h.client.get("/dashboard/stream/runs")).status_code == 401
        # The API itself still wants its key.
        assert (await h.client.get("/runs")).status_code == 401
        assert (await h.client.get("/workflows")).status_code == 401
        wrong = await sign_in(h, "alice:wrong")
        assert wrong.status_code == 401 and "not valid" in wrong.text
        csrf_less = await h.client.post("/login", data={"key": KEY})
        assert csrf_less.status_code == 403
        done = await sign_in(h)
        assert done.status_code == 303 and done.headers["location"] == "/workflows"
        cookie = done.headers["set-cookie"]
        assert SESSION_COOKIE in cookie and "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        for path in PAGES[:4]:
            assert (await h.client.get(path, headers=HTML)).status_code == 200, path
        assert "alice" in (await h.client.get("/", headers=HTML)).text
        # A session is not an API key.
        assert (await h.client.get("/runs")).status_code == 401
        value = h.client.cookies[SESSION_COOKIE]
        page = await h.client.get("/", headers=HTML)
        out = await h.client.post("/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303
        assert (await h.client.get("/", headers=HTML)).status_code == 303
        # Tampered: refused; the same cookie untampered is good until it expires.
        h.client.cookies.clear()
        h.client.cookies.set(SESSION_COOKIE, value[:-4] + "AAAA")
        assert (await h.client.get("/", headers=HTML)).status_code == 303
        h.client.cookies.clear()
        h.client.cookies.set(SESSION_COOKIE, value)
        assert (await h.client.get("/", headers=HTML)).status_code == 200


async def test_a_session_signs_in_a_named_approver(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    from urllib.parse import urlsplit

    app = new_app(secret_key=SECRET, public_url="http://testserver")

    @app.workflow("publish")
    async def publish(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval("ok", title="Ship?", timeout="1h", approvers=["alice"])
        decision = await step.wait_for_approval(req)
        return None if decision is None else {"by": decision.by}

    async with (
        make_api(app=app, dashboard=True, api_keys=[KEY, "bob:bob-key"]) as h,
        app.worker(poll_interval=0.02),
    ):
        run_id = await app.start("publish", {})
        run = await wait_status(app, run_id, "waiting")
        request = df.ApprovalRequest.from_json(next(s.output for s in run.steps if s.key == "ok"))
        assert request is not None
        url = urlsplit(request.approve_url)
        link = f"{url.path}?{url.query}"
        assert (await h.client.get(link)).status_code == 401
        await sign_in(h, "bob:bob-key")
        assert (await h.client.get(link)).status_code == 403
        await sign_in(h)
        page = await h.client.get(link)
        assert page.status_code == 200 and "alice" in page.text
        done = await h.client.post(link, data={"csrf": csrf_of(page), "decision": "approve"})
        assert done.status_code == 200
        assert (await app.wait_for_run(run_id, timeout=10)).result == {"by": "alice"}


async def test_the_inbox_decides_with_csrf(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app(secret_key=SECRET, public_url="http://testserver")

    @app.workflow("publish")
    async def publish(event: df.Event, step: df.Step) -> Any:
        req = await step.request_approval("ok", title="Ship <it>?", timeout="1h")
        decision = await step.wait_for_approval(req)
        return None if decision is None else {"approved": decision.approved}

    async with make_api(app=app, dashboard=True) as h, app.worker(poll_interval=0.02):
        run_id = await app.start("publish", {})
        await wait_status(app, run_id, "waiting")
        inbox = await h.client.get("/approvals/inbox", headers=HTML)
        assert "Ship &lt;it&gt;?" in inbox.text
        approval = re.search(r'name="approval" value="([^"]+)"', inbox.text)
        assert approval
        form = {"approval": approval.group(1), "decision": "reject"}
        assert (await h.client.post("/dashboard/approvals", data=form)).status_code == 403
        form["csrf"] = csrf_of(inbox)
        assert (await h.client.post("/dashboard/approvals", data=form)).status_code == 303
        assert (await app.wait_for_run(run_id, timeout=10)).result == {"approved": False}
        assert (await h.client.post("/dashboard/approvals", data=form)).status_code == 409


async def test_the_events_page_lists_events_with_the_runs_they_started(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app) as h:
        sent = [await h.app.send("shout", {"n": n}, id=f"event-{n}") for n in range(30)]
        page = await h.client.get("/events", headers=HTML)
        assert page.status_code == 200
        assert "event-29" in page.text and sent[29].run_ids[0] in page.text
        assert "event-4" not in page.text  # 25 to a page, newest first
        older = re.search(r'href="/events\?before=(\d+)"', page.text)
        assert older
        second = await h.client.get(f"/events?before={older.group(1)}", headers=HTML)
        assert "event-4" in second.text and "event-29" not in second.text
        assert "event-0" in second.text and sent[0].run_ids[0] in second.text
        bad = await h.client.get("/events?before=x", headers=HTML)
        assert bad.status_code == 400


async def test_refused_webhook_deliveries_are_kept_bounded_without_secrets(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    from dataflows.records import WebhookRejection
    from tests.http.conftest import SECRET as HOOK_SECRET
    from tests.http.conftest import hook_headers

    async with dashboard(make_api, new_app, max_body_bytes=10_000) as h:
        body = b'{"id": "<script>1</script>"}'
        forged = hook_headers(body, "d-1", secret="wrong")
        assert (
            await h.client.post("/hooks/testhook", content=body, headers=forged)
        ).status_code == 401
        big = b'{"pad": "' + b"x" * 5000 + b'"}'
        headers = hook_headers(big, "d-2", secret="wrong")
        assert (
            await h.client.post("/hooks/testhook", content=big, headers=headers)
        ).status_code == 401
        huge = b"y" * 20_000
        assert (
            await h.client.post("/hooks/testhook", content=huge, headers=hook_headers(huge, "d-3"))
        ).status_code == 413
        assert (await h.client.post("/hooks/nope", content=b"{}")).status_code == 404
        good = hook_headers(body, "d-4")
        assert (
            await h.client.post("/hooks/testhook", content=body, headers=good)
        ).status_code == 202
        rows = await h.app.store.recent_webhook_rejections(10)
        for _ in range(200):  # written in the background
            if len(rows) == 4:
                break
            await asyncio.sleep(0.01)
            rows = await h.app.store.recent_webhook_rejections(10)
        # Written in the background, in whatever order they finish.
        assert sorted((r.source, r.status, r.body_bytes) for r in rows) == [
            ("nope", 404, None),
            ("testhook", 401, len(body)),
            ("testhook", 401, len(big)),
            ("testhook", 413, None),
        ]
        small = next(r for r in rows if r.body_bytes == len(body))
        assert small.body == body.decode()
        assert all(r.body is None for r in rows if r is not small and r.source == "testhook")
        page = await h.client.get("/events", headers=HTML)
        assert "Refused webhook deliveries" in page.text and "&lt;script&gt;1" in page.text
        assert "testhook:d-4" in page.text  # the accepted delivery is an event
        for row in rows:
            assert HOOK_SECRET not in repr(row)
        assert HOOK_SECRET not in page.text
        # Only the newest are kept.
        for n in range(5):
            await h.app.store.record_webhook_rejection(
                WebhookRejection(0, "bulk", 401, f"no {n}", None, 0, 1.0), keep=3
            )
        kept = await h.app.store.recent_webhook_rejections(10)
        assert [r.reason for r in kept] == ["no 4", "no 3", "no 2"]


async def test_without_the_dashboard_its_paths_are_the_apis(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with make_api(api_keys=[KEY]) as h:  # create_api(app): no dashboard unless asked
        assert (await h.client.get("/", headers=HTML)).status_code == 401
        assert (await h.client.get("/login", headers=HTML)).status_code == 401
        auth = {**HTML, "Authorization": f"Bearer {KEY}"}
        assert (await h.client.get("/", headers=auth)).status_code == 404
        workflows = await h.client.get("/workflows", headers=auth)
        assert workflows.headers["content-type"].startswith("application/json")


def test_dev_and_serve_take_no_dashboard() -> None:
    from click.testing import CliRunner

    from dataflows.cli import cli

    for command in ("dev", "serve"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert "--no-dashboard" in result.output


async def test_parent_and_child_runs_link_each_other_and_an_event_id_finds_its_runs(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app(secret_key=SECRET)

    @app.workflow("child")
    async def child(event: df.Event, step: df.Step) -> Any:
        return {"doubled": event.data["n"] * 2}

    @app.workflow("parent", trigger=df.on_event("family"))
    async def parent(event: df.Event, step: df.Step) -> Any:
        return await step.invoke("kid", "child", {"n": 21})

    async with make_api(app=app, dashboard=True) as h, app.worker(poll_interval=0.02):
        sent = await app.send("family", {}, id="family-event-1")
        parent_id = sent.run_ids[0]
        await wait_status(app, parent_id, "completed")
        page = await h.client.get(f"/runs/{parent_id}", headers=HTML)
        kid = re.search(r"Children</dt><dd><a href=\"/runs/([0-9a-f]+)\"", page.text)
        assert kid, page.text
        child_page = await h.client.get(f"/runs/{kid.group(1)}", headers=HTML)
        assert child_page.status_code == 200 and f"/runs/{parent_id}" in child_page.text
        assert "&#34;doubled&#34;: 42" in child_page.text
        found = await h.client.get("/?q=family-event-1", headers=HTML)
        assert found.status_code == 200 and parent_id in found.text
        by_run = await h.client.get(f"/?q={parent_id}", headers=HTML)
        assert by_run.status_code == 303 and by_run.headers["location"] == f"/runs/{parent_id}"


async def test_a_waiting_run_shows_what_it_waits_for(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app(secret_key=SECRET)

    @app.workflow("pays", trigger=df.on_event("order"))
    async def pays(event: df.Event, step: df.Step) -> Any:
        return await step.wait_for_event("payment", "paid", match="data.id", timeout="1h")

    async with make_api(app=app, dashboard=True) as h, app.worker(poll_interval=0.02):
        run_id = (await app.send("order", {"id": "<b>7</b>"})).run_ids[0]
        await wait_status(app, run_id, "waiting")
        page = await h.client.get(f"/runs/{run_id}", headers=HTML)
        assert page.status_code == 200
        facts = page.text[page.text.index("<dt>Wait</dt>") :]
        facts = facts[: facts.index("</dd>")]
        assert (
            "<code>paid</code>" in facts and "data.id = &#34;&lt;b&gt;7&lt;/b&gt;&#34;" in facts
        ), facts
        assert "payment" in facts and "until" in facts
        assert 'id="ev-name" name="name" value="paid"' in page.text


async def test_an_event_lists_the_runs_it_started_and_those_it_resumed(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app(secret_key=SECRET)

    @app.workflow("pays", trigger=df.on_event("order"))
    async def pays(event: df.Event, step: df.Step) -> Any:
        paid = await step.wait_for_event("payment", "paid", match="data.id", timeout="1h")
        return None if paid is None else paid.id

    @app.workflow("thanks", trigger=df.on_event("paid"))
    async def thanks(event: df.Event, step: df.Step) -> Any:
        return "thanks"

    async with make_api(app=app, dashboard=True) as h, app.worker(poll_interval=0.02):
        waiting = (await app.send("order", {"id": 7})).run_ids[0]
        await wait_status(app, waiting, "waiting")
        sent = await app.send("paid", {"id": 7}, id="paid-event-7")
        [started] = sent.run_ids
        await wait_status(app, waiting, "completed")
        await wait_status(app, started, "completed")
        for page in (
            await h.client.get("/?q=paid-event-7", headers=HTML),
            await h.client.get("/events", headers=HTML),
        ):
            assert page.status_code == 200
            text = page.text[page.text.index("paid-event-7") :]
            for run_id, how in ((started, "started"), (waiting, "resumed")):
                line = text[text.index(f"<code>{run_id}</code>") :]
                line = line[: line.index("</div>")]
                assert f'<span class="df-muted">{how}</span>' in line, line


async def test_runs_come_a_page_at_a_time_and_filter_by_time(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    app = new_app(secret_key=SECRET)

    @app.workflow("idle", trigger=df.on_event("tick"))
    async def idle(event: df.Event, step: df.Step) -> Any:
        return None

    async with make_api(app=app, dashboard=True) as h:  # no worker: the runs stay queued
        ids = [(await app.send("tick", {"n": n})).run_ids[0] for n in range(55)]
        first = await h.client.get("/?workflow=idle&status=queued", headers=HTML)
        shown = re.findall(r'data-run="([^"]+)"', first.text)
        assert shown == ids[::-1][:50]
        older = re.search(r'href="/\?([^"]*after_run=[^"]+)" rel="next"', first.text)
        assert older
        second = await h.client.get("/?" + older.group(1).replace("&amp;", "&"), headers=HTML)
        assert re.findall(r'data-run="([^"]+)"', second.text) == ids[::-1][50:]
        assert 'rel="next"' not in second.text
        run = await app.get_run(ids[10])
        # A microsecond early: the datetime may have rounded the stored time up.
        since = (run.created_at - timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        later = await h.client.get(f"/?workflow=idle&since={since}", headers=HTML)
        after = re.findall(r'data-run="([^"]+)"', later.text)
        assert ids[10] in after and ids[9] not in after and ids[54] in after
        until = await h.client.get(f"/?workflow=idle&until={since}", headers=HTML)
        assert re.findall(r'data-run="([^"]+)"', until.text) == ids[:10][::-1]


async def test_sign_in_goes_back_only_to_a_page_of_this_site(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    async with dashboard(make_api, new_app, api_keys=[KEY]) as h:
        for target, landing in [
            ("/runs/x?y=1", "/runs/x?y=1"),
            ("//evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("", "/"),
        ]:
            h.client.cookies.clear()
            csrf = csrf_of(await h.client.get("/login", headers=HTML))
            done = await h.client.post("/login", data={"csrf": csrf, "key": KEY, "next": target})
            assert done.status_code == 303 and done.headers["location"] == landing, target


def test_the_banners_say_where_the_dashboard_is() -> None:
    from rich.console import Console

    from dataflows.cli import dev, serve

    app = df.Dataflows("sqlite:///:memory:")
    console = Console(width=200, record=True)
    banner, _ = dev._banner(app, "app.py", "http://127.0.0.1:8000", 10, dashboard=True)
    console.print(banner)
    console.print(serve._banner(app, "app.py", "http://127.0.0.1:8001", 1, False))
    text = console.export_text()
    assert "dashboard  http://127.0.0.1:8000/" in text
    assert "off (--no-dashboard)" in text


async def test_a_live_stream_reports_a_change_and_ends_when_the_server_stops(
    make_api: Callable[..., Any], new_app: Callable[..., df.Dataflows]
) -> None:
    from dataflows.http.dashboard import stop_streams

    async with dashboard(make_api, new_app) as h:
        page = await h.client.get("/", headers=HTML)
        stream = re.search(r'data-stream="([^"]+)"', page.text)
        assert stream
        url = stream.group(1).replace("&amp;", "&")
        reading = asyncio.create_task(h.client.get(url))
        await asyncio.sleep(0.2)
        run_id = await h.app.start("shouts", {"n": 3})  # the list changes
        await wait_status(h.app, run_id, "failed")
        await asyncio.sleep(1.5)
        stop_streams(h.api)
        answer = await asyncio.wait_for(reading, 5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert "event: change" in answer.text
