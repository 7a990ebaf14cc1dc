"""Through a real app on SQLite: a redelivered webhook is one event and starts one run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import dataflows as df
from dataflows.sources import (
    AzureDevOpsSource,
    GenericSource,
    GitHubSource,
    ShopifySource,
    SlackSource,
    Source,
    StripeSource,
    WebhookRequest,
    azure_devops,
    github,
    shopify,
    slack,
    stripe,
)
from tests.sources import signed
from tests.sources.signed import NOW, body_of

GENERIC = GenericSource("acme", "k")
CASES: dict[str, tuple[Source, WebhookRequest, df.Trigger]] = {
    "shopify": (
        ShopifySource("k"),
        signed.shopify(body_of({"id": 1}), "k", topic="orders/create"),
        shopify.on("orders/create"),
    ),
    "github": (
        GitHubSource("k"),
        signed.github(body_of({"action": "opened"}), "k", event="pull_request"),
        github.on("pull_request.opened"),
    ),
    "stripe": (
        StripeSource("k"),
        signed.stripe(body_of({"id": "evt_1", "type": "invoice.paid"}), "k"),
        stripe.on("invoice.paid"),
    ),
    "slack": (
        SlackSource("k"),
        signed.slack(
            body_of(
                {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
            ),
            "k",
        ),
        slack.on_event_callback("app_mention"),
    ),
    "azure_devops": (
        AzureDevOpsSource("u:p"),
        signed.azure_devops(body_of({"id": "e-1", "eventType": "workitem.created"}), "u:p"),
        azure_devops.on_work_item_created(),
    ),
    "generic": (
        GENERIC,
        signed.generic(body_of({}), "k", **{"X-Event-Type": "ping", "X-Webhook-Id": "w-1"}),
        GENERIC.on("ping"),
    ),
}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[df.Dataflows]:
    app = df.Dataflows(f"sqlite:///{tmp_path / 'dataflows.db'}")
    yield app
    await app.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_a_redelivery_starts_one_run(app: df.Dataflows, case: str) -> None:
    source, request, trigger = CASES[case]
    app.add_source(source)

    @app.workflow("handle", trigger=trigger)
    async def handle(event: df.Event, step: df.Step) -> Any:
        return None

    source.verify(request, NOW)
    assert source.handshake(request) is None
    event = source.parse(request)
    results = [
        await app.send(event.name, event.data, id=f"{source.name}:{event.delivery_id}")
        for _ in range(2)
    ]
    assert len(results[0].run_ids) == 1 and not results[0].duplicate
    assert results[1].duplicate
    assert (results[1].event_id, results[1].run_ids) == (results[0].event_id, results[0].run_ids)
    assert len(await app.list_runs("handle")) == 1
