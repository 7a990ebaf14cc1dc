"""The dashboard in a real browser (Debian's chromium via Playwright) against ``dataflows dev``.

Set ``DATAFLOWS_SCREENSHOTS=1`` to rewrite the screenshots in docs/images/.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tests.dashboard.browser import KEY, DevServer, screenshot

PAGES = ["/", "/workflows", "/events", "/approvals/inbox", "/runs/any-run"]
ACTIONS = [
    "/dashboard/runs/any-run/cancel",
    "/dashboard/runs/any-run/retry",
    "/dashboard/events",
    "/dashboard/approvals",
]


def mark(page: Any) -> None:
    """Mark the loaded document: a reload or a navigation would lose the mark."""
    page.evaluate("window.__dataflowsMark = 1")


def still_marked(page: Any) -> bool:
    return bool(page.evaluate("window.__dataflowsMark === 1"))


def test_an_anonymous_browser_is_refused_everything(page: Any, dev_server: DevServer) -> None:
    for path in PAGES:
        page.goto(dev_server.url + path)
        assert urlsplit(page.url).path == "/login", path
    screenshot(page, "login")
    for path in ACTIONS:
        answer = page.request.post(dev_server.url + path, form={"csrf": "x"})
        assert answer.status == 401, path
    page.fill("#key", "alice:not-the-key")
    page.click("button[type=submit]")
    assert page.locator(".df-error").inner_text() == "That key is not valid."


def test_find_a_failed_run_read_its_error_retry_it_and_watch_it_complete(
    signed_in_page: Any, dev_server: DevServer
) -> None:
    page = signed_in_page
    dev_server.fail_flag.touch()
    run_id = dev_server.send("order.created", {"id": 7, "fail": True})
    dev_server.wait_status(run_id, "failed")
    page.select_option("select[name=workflow]", "orders")
    page.select_option("select[name=status]", "failed")
    page.click(".df-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=failed"))
    row = page.locator(f"tr[data-run='{run_id}']")
    assert "failed" in row.inner_text()
    screenshot(page, "runs")
    row.locator("a").click()
    page.wait_for_url(f"**/runs/{run_id}")
    error = page.locator("#steps .df-error").first
    assert "card declined for <script>order 7</script>" in error.inner_text()
    screenshot(page, "run")  # before the traceback opens: it names this machine's paths
    page.emulate_media(color_scheme="dark")
    screenshot(page, "run-dark")
    page.emulate_media(color_scheme="light")
    page.locator("#steps summary", has_text="Traceback").first.click()
    trace = page.locator("#steps .df-trace").first
    assert "ValueError" in trace.inner_text() and "charge" in trace.inner_text()
    dev_server.fail_flag.unlink()
    page.click("text=Retry run")
    page.wait_for_url(f"**/runs/{run_id}")
    mark(page)
    page.locator("h1 .df-s-completed").wait_for()
    assert still_marked(page)
    assert dev_server.run(run_id)["status"] == "completed"


def test_cancel_a_waiting_run(signed_in_page: Any, dev_server: DevServer) -> None:
    page = signed_in_page
    run_id = dev_server.send("order.created", {"id": 8})
    dev_server.wait_status(run_id, "waiting")
    page.goto(f"{dev_server.url}/runs/{run_id}")
    assert "order.paid" in page.locator(".df-facts").inner_text()
    assert page.locator("#ev-name").input_value() == "order.paid"
    page.click("text=Cancel run")
    page.locator("h1 .df-s-cancelled").wait_for()
    assert dev_server.run(run_id)["status"] == "cancelled"


def test_send_the_awaited_event_from_the_run_page(
    signed_in_page: Any, dev_server: DevServer
) -> None:
    page = signed_in_page
    run_id = dev_server.send("order.created", {"id": 9})
    dev_server.wait_status(run_id, "waiting")
    page.goto(f"{dev_server.url}/runs/{run_id}")
    page.fill("#ev-data", '{"id": 9}')
    page.click("text=Send event")
    page.locator("h1 .df-s-completed").wait_for()


def test_a_test_event_from_the_form_shows_its_run_without_reloading(
    signed_in_page: Any, dev_server: DevServer
) -> None:
    page = signed_in_page
    page.goto(f"{dev_server.url}/events")
    mark(page)
    page.fill("#ev-name", "order.created")
    page.fill("#ev-data", '{"id": 4242}')
    page.click("text=Send event")
    page.locator("[data-result]", has_text="Sent.").wait_for()
    page.locator("#runs tr", has_text="orders").first.wait_for()
    assert still_marked(page)
    screenshot(page, "events")
    page.goto(f"{dev_server.url}/workflows")
    assert "order.created" in page.locator("#wf-orders").inner_text()
    screenshot(page, "workflows")


def test_a_post_without_the_csrf_token_is_refused(
    signed_in_page: Any, dev_server: DevServer
) -> None:
    run_id = dev_server.send("order.created", {"id": 10})
    dev_server.wait_status(run_id, "waiting")
    answer = signed_in_page.request.post(
        f"{dev_server.url}/dashboard/runs/{run_id}/cancel", form={}
    )
    assert answer.status in (403, 415)
    answer = signed_in_page.request.post(
        f"{dev_server.url}/dashboard/runs/{run_id}/cancel", form={"csrf": "forged"}
    )
    assert answer.status == 403
    assert dev_server.run(run_id)["status"] == "waiting"


def _approval_link(
    dev_server: DevServer, data: dict[str, Any], status: str = "waiting"
) -> tuple[str, str]:
    run_id = dev_server.send("post.drafted", data)
    run = dev_server.wait_status(run_id, status, timeout=15)
    output = next(s["output"] for s in run["steps"] if s["key"] == "approval")
    url = urlsplit(output["approve_url"])
    return run_id, f"{dev_server.url}{url.path}?{url.query}"


def test_approve_through_a_link_once(page: Any, dev_server: DevServer) -> None:
    run_id, link = _approval_link(dev_server, {"title": "<b>news</b>"})
    for _ in range(2):  # opening the page decides nothing
        page.goto(link)
        assert page.locator("h1").inner_text() == "Publish <b>news</b>?"
    assert dev_server.run(run_id)["status"] == "waiting"
    screenshot(page, "approval")
    page.click("button[value=approve]")
    assert page.locator("h1").inner_text() == "Approved"
    dev_server.wait_status(run_id, "completed")
    again = page.goto(link)
    assert again is not None and again.status == 409
    token_end = link.index("?")
    forged = "AAA" if link[token_end - 3 : token_end] != "AAA" else "BBB"
    tampered = page.goto(link[: token_end - 3] + forged + link[token_end:])
    assert tampered is not None and tampered.status in (403, 404)


def test_an_expired_link_is_refused(page: Any, dev_server: DevServer) -> None:
    _, link = _approval_link(dev_server, {"title": "soon", "ttl": "1s"}, status="completed")
    answer = page.goto(link)
    assert answer is not None and answer.status == 410


def test_the_inbox_approves(signed_in_page: Any, dev_server: DevServer) -> None:
    page = signed_in_page
    run_id, _ = _approval_link(dev_server, {"title": "from the inbox"})
    page.goto(f"{dev_server.url}/approvals/inbox")
    card = page.locator("article", has_text="Publish from the inbox?")
    screenshot(page, "approvals")
    card.locator("button[value=approve]").click()
    page.wait_for_url("**/approvals/inbox")
    assert dev_server.wait_status(run_id, "completed")["result"] == {"approved": True}


def test_the_runs_list_shows_new_runs_and_their_changes_live(
    signed_in_page: Any, dev_server: DevServer
) -> None:
    page = signed_in_page
    mark(page)
    run_id = dev_server.send("order.created", {"id": 5555})
    row = page.locator(f"tr[data-run='{run_id}']")
    row.locator(".df-s-waiting").wait_for()
    dev_server.send("order.paid", {"id": 5555})
    row.locator(".df-s-completed").wait_for()
    assert still_marked(page)


def test_the_pages_read_without_javascript(browser: Any, dev_server: DevServer) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{dev_server.url}/login")
        page.fill("#key", KEY)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dev_server.url}/")
        for path in ("/", "/workflows", "/events", "/approvals/inbox"):
            answer = page.goto(dev_server.url + path)
            assert answer is not None and answer.status == 200, path
            assert page.locator("h1").count() >= 1
    finally:
        context.close()
