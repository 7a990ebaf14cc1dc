"""The example as a new user meets it: `scripts/run-example --demo` on SQLite, and its parts."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

import dataflows as df
from dataflows.errors import WebhookUnauthorized
from dataflows.sources import AzureDevOpsSource, ShopifySource, WebhookRequest
from examples.clickup import send_webhook, services
from examples.clickup.standins import StandIns
from tests.e2e.conftest import ROOT, free_port


def _leftovers(port: int) -> list[psutil.Process]:
    """`dataflows dev` processes started for ``port`` (run.py runs it in its own session)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "dev" in cmdline and "--port" in cmdline and str(port) in cmdline:
            found.append(proc)
    return found


def test_run_example_demo() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAFLOWS_", "EXAMPLE_"))}
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "run-example"), "--demo", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        for proc in _leftovers(port):
            proc.kill()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "demo OK" in done.stdout
    assert "(the same Shopify delivery again) -> 202" in done.stdout
    # The first Slack call (a new order's message, or an approval request) is answered 429 and
    # retried.
    assert re.search(r"(notify-slack|ask-approval) +run +completed +attempts=2", done.stdout)
    assert "GET (preview) -> 200; approve -> 200" in done.stdout
    assert "the same link again -> 409" in done.stdout
    assert not _leftovers(port)  # the dev server was stopped, not orphaned


# -- the parts: signatures the real sources accept, clients against the stand-ins ---------------


def _request(delivery: send_webhook.Delivery) -> WebhookRequest:
    return WebhookRequest(delivery.headers, delivery.body, {})


def test_signed_deliveries_verify_with_the_sources() -> None:
    shopify = send_webhook.shopify_order_created(7, secret="s3cret")
    ShopifySource("old-secret,s3cret").verify(_request(shopify), time.time())
    tampered = send_webhook.Delivery(shopify.path, shopify.headers, shopify.body + b" ")
    with pytest.raises(WebhookUnauthorized):
        ShopifySource("s3cret").verify(_request(tampered), time.time())

    azure = send_webhook.azure_work_item_created(7, secret="hook:pw")
    AzureDevOpsSource("hook:pw").verify(_request(azure), time.time())
    parsed = AzureDevOpsSource("hook:pw").parse(_request(azure))
    assert parsed.name == "azure_devops/workitem.created"
    assert parsed.data["resource"]["id"] == 7
    with pytest.raises(WebhookUnauthorized):
        AzureDevOpsSource("hook:other").verify(_request(azure), time.time())


@pytest.fixture
def quick_standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIns]:
    with StandIns() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


async def test_clients_map_http_errors_to_retries(
    quick_standins: StandIns, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await services.get_work_item(12, "Demo")
    assert item["id"] == 12 and item["title"].endswith("(#12)")
    order = await services.get_order(5001)
    assert order["items"] == 3 and order["customer"] == "Ada Lovelace"

    quick_standins.arm_rate_limit("azure")
    with pytest.raises(df.RetryAfterError) as limited:
        await services.get_work_item(12, "Demo")
    assert limited.value.delay == 1.0

    monkeypatch.setenv("AZURE_DEVOPS_PAT", "wrong")
    with pytest.raises(df.NonRetriableError, match="401"):
        await services.get_work_item(12, "Demo")
    assert quick_standins.calls == {"azure": 3, "shopify": 1}
