"""Replayed webhook bodies, through the real API on SQLite and PostgreSQL.

GitHub, Shopify and the generic source sign the body but not the delivery id: the same signed
body sent again within the source's replay window, under any delivery id or event-name header,
is a duplicate of its first event (same event id, same runs, no new run). Stripe and Slack sign
a timestamp and keep no window.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

import dataflows as df
from dataflows.clock import ManualClock
from dataflows.errors import StoreUnavailable
from dataflows.http import create_api
from dataflows.sources import (
    GenericSource,
    GitHubSource,
    ShopifySource,
    SlackSource,
    Source,
    StripeSource,
    WebhookRequest,
)
from dataflows.store.sqlite import sqlite_path
from tests.http.conftest import serve
from tests.pg import DbTarget
from tests.sources import signed
from tests.sources.signed import NOW, body_of

DAY = 86400.0

#: Per body-signed source: how to build it (``**options`` for the constructor) and a signed
#: request for a body with a delivery id and an event-name header of the caller's choosing.
BodySigner = Callable[[bytes, str, str], WebhookRequest]
BODY_SIGNED: dict[str, tuple[Callable[..., Source], BodySigner, str]] = {
    "github": (
        lambda **o: GitHubSource("k", **o),
        lambda body, delivery, event: signed.github(body, "k", event=event, delivery=delivery),
        "push",
    ),
    "shopify": (
        lambda **o: ShopifySource("k", **o),
        lambda body, delivery, event: signed.shopify(body, "k", topic=event, webhook_id=delivery),
        "orders/create",
    ),
    "generic": (
        lambda **o: GenericSource("generic", "k", **o),
        lambda body, delivery, event: signed.generic(
            body, "k", **{"X-Webhook-Id": delivery, "X-Event-Type": event}
        ),
        "invoice.created",
    ),
}


class Hooks:
    """The API of an app with one source and a workflow on each event name it may produce."""

    def __init__(self, app: df.Dataflows, client: httpx.AsyncClient, clock: ManualClock) -> None:
        self.app = app
        self.client = client
        self.clock = clock

    async def post(self, source: str, request: WebhookRequest) -> dict[str, Any]:
        response = await self.client.post(
            f"/hooks/{source}", content=request.body, headers=dict(request.headers)
        )
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def run_count(self) -> int:
        return len(await self.app.list_runs(limit=1000))


@pytest.fixture
def hooks(db: DbTarget) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(
        source: Source | None, environ: dict[str, str] | None = None
    ) -> AsyncIterator[Hooks]:
        """``source`` added in code, or ``None`` for the sources ``environ`` enables."""
        clock = ManualClock(NOW)
        app = df.Dataflows(db.url, schema=db.schema or "dataflows", clock=clock)
        if source is not None:
            app.add_source(source)
        listened = [df.on_event(f"{name}/*") for name in ("github", "shopify", "generic")]

        @app.workflow(
            "handle", trigger=[*listened, df.on_event("slack/*"), df.on_event("stripe/*")]
        )
        async def handle(event: df.Event, step: df.Step) -> None:
            return None

        api = create_api(app, api_keys=(), environ=environ or {})
        async with serve(api) as client:
            yield Hooks(app, client, clock)

    return make


@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_a_replayed_body_under_a_new_delivery_id_is_a_duplicate(
    hooks: Callable[..., Any], name: str
) -> None:
    make, sign, event = BODY_SIGNED[name]
    body = body_of({"id": 7, "ref": "main"})
    async with hooks(make()) as h:
        first = await h.post(name, sign(body, "d-1", event))
        assert first["duplicate"] is False and len(first["run_ids"]) == 1

        replayed = await h.post(name, sign(body, "d-2", event))
        assert replayed["duplicate"] is True
        assert replayed["event_id"] == first["event_id"] == f"{name}:d-1"
        assert replayed["run_ids"] == first["run_ids"]
        assert replayed["resumed_run_ids"] == []
        assert await h.run_count() == 1

        # The provider's own redelivery (same delivery id, same body) is still a duplicate.
        redelivered = await h.post(name, sign(body, "d-1", event))
        assert (redelivered["duplicate"], redelivered["event_id"]) == (True, f"{name}:d-1")
        assert redelivered["run_ids"] == first["run_ids"]
        assert await h.run_count() == 1


@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_the_unsigned_event_name_header_cannot_turn_a_body_into_another_event(
    hooks: Callable[..., Any], name: str
) -> None:
    make, sign, event = BODY_SIGNED[name]
    body = body_of({"id": 8})
    async with hooks(make()) as h:
        first = await h.post(name, sign(body, "d-1", event))
        swapped = await h.post(name, sign(body, "d-2", "something_else"))
        assert swapped["duplicate"] is True
        assert (swapped["event_id"], swapped["run_ids"]) == (first["event_id"], first["run_ids"])
        assert [r.event.name for r in await h.app.list_runs()] == [f"{name}/{event}"]


@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_different_bodies_are_different_events(hooks: Callable[..., Any], name: str) -> None:
    make, sign, event = BODY_SIGNED[name]
    async with hooks(make()) as h:
        answers = [
            await h.post(name, sign(body_of({"id": 9, "n": n}), f"d-{n}", event)) for n in range(3)
        ]
        # A body differing from another by one byte (a space) is another body too.
        spaced = await h.post(name, sign(body_of({"id": 9, "n": 0}) + b" ", "d-9", event))
        answers.append(spaced)
        assert [a["duplicate"] for a in answers] == [False] * 4
        assert len({a["event_id"] for a in answers}) == 4
        assert await h.run_count() == 4


@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_a_body_replayed_after_the_window_is_a_new_event(
    hooks: Callable[..., Any], name: str
) -> None:
    make, sign, event = BODY_SIGNED[name]
    body = body_of({"id": 10})
    async with hooks(make(replay_window="1h")) as h:
        first = await h.post(name, sign(body, "d-1", event))
        h.clock.advance(3599)
        assert (await h.post(name, sign(body, "d-2", event)))["duplicate"] is True

        h.clock.advance(2)  # the window counts from the first delivery, not the replays
        late = await h.post(name, sign(body, "d-3", event))
        assert late["duplicate"] is False and late["event_id"] == f"{name}:d-3"
        assert late["run_ids"] != first["run_ids"]
        assert await h.run_count() == 2

        # The late delivery opened a window of its own.
        again = await h.post(name, sign(body, "d-4", event))
        assert (again["duplicate"], again["event_id"]) == (True, late["event_id"])
        assert again["run_ids"] == late["run_ids"]


async def test_the_default_window_is_24_hours(hooks: Callable[..., Any]) -> None:
    make, sign, event = BODY_SIGNED["github"]
    body = body_of({"id": 11})
    async with hooks(make()) as h:
        first = await h.post("github", sign(body, "d-1", event))
        h.clock.advance(DAY - 1)
        inside = await h.post("github", sign(body, "d-2", event))
        assert (inside["duplicate"], inside["event_id"]) == (True, first["event_id"])
        h.clock.advance(1)
        assert (await h.post("github", sign(body, "d-3", event)))["duplicate"] is False


@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_concurrent_replays_start_exactly_one_run(
    hooks: Callable[..., Any], name: str
) -> None:
    make, sign, event = BODY_SIGNED[name]
    body = body_of({"id": 12, "commits": ["a", "b"]})
    async with hooks(make()) as h:
        answers = await asyncio.gather(
            *(h.post(name, sign(body, f"d-{n}", event)) for n in range(10))
        )
        assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 9
        assert len({a["event_id"] for a in answers}) == 1
        assert len({tuple(a["run_ids"]) for a in answers}) == 1
        assert await h.run_count() == 1


async def test_concurrent_replays_of_several_bodies_start_one_run_each(
    hooks: Callable[..., Any],
) -> None:
    make, sign, event = BODY_SIGNED["github"]
    bodies = [body_of({"id": 13, "n": n}) for n in range(4)]
    async with hooks(make()) as h:
        answers = await asyncio.gather(
            *(h.post("github", sign(bodies[n % 4], f"d-{n}", event)) for n in range(20))
        )
        assert sum(not a["duplicate"] for a in answers) == 4
        assert len({a["event_id"] for a in answers}) == 4
        assert await h.run_count() == 4


@pytest.mark.parametrize("window", [0, None, "0s"])
@pytest.mark.parametrize("name", list(BODY_SIGNED))
async def test_with_the_window_off_a_new_delivery_id_is_a_new_event(
    hooks: Callable[..., Any], name: str, window: Any
) -> None:
    make, sign, event = BODY_SIGNED[name]
    body = body_of({"id": 14})
    source = make(replay_window=window)
    assert source.replay_window is None
    async with hooks(source) as h:
        first = await h.post(name, sign(body, "d-1", event))
        second = await h.post(name, sign(body, "d-2", event))
        assert second["duplicate"] is False and second["event_id"] != first["event_id"]
        assert await h.run_count() == 2
        # The delivery id alone still deduplicates.
        assert (await h.post(name, sign(body, "d-2", event)))["duplicate"] is True
        assert await h.run_count() == 2


async def test_the_window_from_the_environment(hooks: Callable[..., Any]) -> None:
    """``DATAFLOWS_GITHUB_REPLAY_WINDOW`` sets the window of the source the environment enables."""
    _, sign, event = BODY_SIGNED["github"]
    body = body_of({"id": 15})
    environ = {"DATAFLOWS_GITHUB_SECRET": "k", "DATAFLOWS_GITHUB_REPLAY_WINDOW": "10m"}
    async with hooks(None, environ) as h:
        first = await h.post("github", sign(body, "d-1", event))
        h.clock.advance(599)
        assert (await h.post("github", sign(body, "d-2", event)))["duplicate"] is True
        h.clock.advance(1)
        later = await h.post("github", sign(body, "d-3", event))
        assert later["duplicate"] is False and later["event_id"] != first["event_id"]

    off = {"DATAFLOWS_GITHUB_SECRET": "k", "DATAFLOWS_GITHUB_REPLAY_WINDOW": "0"}
    async with hooks(None, off) as h:
        await h.post("github", sign(body, "d-1", event))
        assert (await h.post("github", sign(body, "d-2", event)))["duplicate"] is False


async def test_stripe_and_slack_keep_no_window(hooks: Callable[..., Any]) -> None:
    """They sign a timestamp: the same body signed at another time is another delivery, and the
    id of a replay comes from what was signed."""
    stripe, slack = StripeSource("k"), SlackSource("k")
    assert (stripe.signs_delivery_id, stripe.replay_window) == (True, None)
    assert (slack.signs_delivery_id, slack.replay_window) == (True, None)

    command = b"command=%2Fdeploy&text=prod&user_id=U1"
    async with hooks(slack) as h:
        first = await h.post("slack", signed.slack(command, "k", timestamp=NOW))
        second = await h.post("slack", signed.slack(command, "k", timestamp=NOW + 1))
        assert not first["duplicate"] and not second["duplicate"]
        assert first["event_id"] != second["event_id"]
        assert await h.run_count() == 2

    event = body_of({"id": "evt_1", "type": "invoice.paid"})
    async with hooks(stripe) as h:
        first = await h.post("stripe", signed.stripe(event, "k", timestamp=NOW))
        resent = await h.post("stripe", signed.stripe(event, "k", timestamp=NOW + 1))
        assert (resent["duplicate"], resent["event_id"]) == (True, first["event_id"])
        other = body_of({"id": "evt_2", "type": "invoice.paid"})
        assert (await h.post("stripe", signed.stripe(other, "k")))["duplicate"] is False
        assert await h.run_count() == 2 + 2  # the same store: Slack's two runs, Stripe's two


async def test_a_body_whose_event_was_purged_is_new_again(hooks: Callable[..., Any]) -> None:
    """A retention shorter than the window: once the first event is purged, the body starts a
    new event rather than pointing at one that is gone."""
    make, sign, event = BODY_SIGNED["github"]
    body = body_of({"id": 16})
    async with hooks(make()) as h:
        await h.post("github", sign(body, "d-1", event))
        h.clock.advance(120)
        await h.app.purge("1m")
        again = await h.post("github", sign(body, "d-2", event))
        assert again["duplicate"] is False and again["event_id"] == "github:d-2"
        assert len(again["run_ids"]) == 1
        replayed = await h.post("github", sign(body, "d-3", event))
        assert (replayed["duplicate"], replayed["event_id"]) == (True, "github:d-2")


async def test_a_store_outage_answers_503_and_remembers_nothing(
    hooks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    make, sign, event = BODY_SIGNED["github"]
    body = body_of({"id": 17})
    async with hooks(make()) as h:
        store = h.app.store
        real = store.send_events

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the database is away")

        monkeypatch.setattr(store, "send_events", unavailable)
        request = sign(body, "d-1", event)
        response = await h.client.post(
            "/hooks/github", content=request.body, headers=dict(request.headers)
        )
        assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
        monkeypatch.setattr(store, "send_events", real)
        answer = await h.post("github", sign(body, "d-2", event))
        assert answer["duplicate"] is False and answer["event_id"] == "github:d-2"


async def test_expired_bodies_are_deleted_by_later_intakes(
    hooks: Callable[..., Any], db: DbTarget
) -> None:
    make, sign, event = BODY_SIGNED["github"]
    async with hooks(make(replay_window="1h")) as h:
        for n in range(3):
            await h.post("github", sign(body_of({"old": n}), f"old-{n}", event))
            h.clock.advance(1)
        assert len(_body_rows(db)) == 3
        h.clock.advance(3600)
        # Each body remembered deletes up to two expired rows, oldest first.
        await h.post("github", sign(body_of({"new": 0}), "new-0", event))
        assert sorted(_body_rows(db)) == ["github:new-0", "github:old-2"]
        await h.post("github", sign(body_of({"new": 1}), "new-1", event))
        assert sorted(_body_rows(db)) == ["github:new-0", "github:new-1"]


def _body_rows(db: DbTarget) -> list[str]:
    """The event ids of the webhook bodies the store remembers."""
    if db.kind == "sqlite":
        with sqlite3.connect(sqlite_path(db.url)) as conn:
            return [row[0] for row in conn.execute("SELECT event_id FROM webhook_bodies")]
    with psycopg.connect(db.url, autocommit=True) as conn:
        query = sql.SQL("SELECT event_id FROM {}.webhook_bodies").format(
            sql.Identifier(db.schema or "dataflows")
        )
        return [row[0] for row in conn.execute(query)]


async def test_replays_through_two_servers_on_one_database_start_one_run(
    db: DbTarget,
) -> None:
    """Two API processes' intakes are separate transactions: the one that remembers the body
    second waits for the first's row and finds the first's event."""
    make, sign, event = BODY_SIGNED["github"]
    body = body_of({"id": 18, "pushed": "twice"})
    apps = [df.Dataflows(db.url, schema=db.schema or "dataflows") for _ in range(2)]
    async with AsyncExitStack() as stack:
        clients = []
        for app in apps:
            app.add_source(make())
            app.workflow("handle", trigger=df.on_event("github/*"))(_handle)
            clients.append(await stack.enter_async_context(serve(create_api(app, api_keys=()))))
        requests = [sign(body, f"d-{n}", event) for n in range(20)]
        responses = await asyncio.gather(
            *(
                clients[n % 2].post(
                    "/hooks/github", content=request.body, headers=dict(request.headers)
                )
                for n, request in enumerate(requests)
            )
        )
        answers = [r.json() for r in responses]
        assert [r.status_code for r in responses] == [202] * 20, answers
        assert sum(not a["duplicate"] for a in answers) == 1
        assert len({a["event_id"] for a in answers}) == 1
        assert len(await apps[0].list_runs()) == 1
    for app in apps:
        await app.close()


async def _handle(event: df.Event, step: df.Step) -> None:
    return None
