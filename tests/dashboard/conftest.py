"""Dashboard fixtures: the HTTP API's (an app on SQLite and PostgreSQL, the ASGI app in-process),
and for the browser tests a ``dataflows dev`` server and one chromium per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.browser import KEY, DevServer, ensure_chromium, start_dev
from tests.http.conftest import make_api, new_app

__all__ = ["browser", "dev_server", "make_api", "new_app", "page", "signed_in_page"]


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from start_dev(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the browser tests (all in one module: Playwright's synchronous API runs
    an event loop of its own, which must be gone before the asyncio tests run)."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page, 1280 wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def signed_in_page(page: Any, dev_server: DevServer) -> Any:
    page.goto(f"{dev_server.url}/")
    assert "/login" in page.url
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dev_server.url}/")
    return page
