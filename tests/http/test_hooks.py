"""POST /hooks/{source}: verified on the raw bytes, stored once per delivery, 202 when committed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

import dataflows as df
from dataflows.http.hooks import delivery_event_id
from tests.http.conftest import SECRET, Harness, HmacSource, hook_headers, sign
from tests.http.test_events import assert_error, waiting


def rejected(source: str) -> float:
    value = REGISTRY.get_sample_value(
        "dataflows_webhook_verifications_failed_total", {"source": source}
    )
    return value or 0.0


async def test_a_signed_delivery_is_stored_and_starts_its_runs(api: Harness) -> None:
    body = json.dumps({"order": 7}).encode()
    response = await api.client.post(
        "/hooks/testhook", content=body, headers=hook_headers(body, "d-1")
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["event_id"] == "testhook:d-1" and answer["duplicate"] is False
    assert len(answer["run_ids"]) == 1
    run = await api.app.get_run(answer["run_ids"][0])
    assert run.workflow_id == "echo" and run.event.name == "test/order"
    assert dict(run.event.data) == {"order": 7}


async def test_every_configured_secret_verifies(api: Harness) -> None:
    body = b"{}"
    response = await api.client.post(
        "/hooks/testhook", content=body, headers=hook_headers(body, "d-2", secret="rotated")
    )
    assert response.status_code == 202


async def test_bad_signatures_are_401_and_counted(api: Harness) -> None:
    before = rejected("testhook")
    body = b'{"order": 1}'
    tampered = await api.client.post(
        "/hooks/testhook", content=b'{"order": 2}', headers=hook_headers(body, "d-3")
    )
    assert_error(tampered, 401, "invalid_signature")
    wrong_secret = await api.client.post(
        "/hooks/testhook", content=body, headers=hook_headers(body, "d-3", secret="nope")
    )
    assert_error(wrong_secret, 401, "invalid_signature")
    unsigned = await api.client.post("/hooks/testhook", content=body)
    assert_error(unsigned, 401, "invalid_signature")
    assert rejected("testhook") == before + 3
    assert await api.app.list_runs() == []


async def test_unknown_sources_are_404(api: Harness) -> None:
    response = await api.client.post("/hooks/shopify", content=b"{}")
    assert_error(response, 404, "unknown_source")
    assert_error(await api.client.get("/hooks/testhook"), 405, "method_not_allowed")


async def test_sources_enabled_from_the_environment(make_api: Any) -> None:
    async with make_api(environ={"DATAFLOWS_GITHUB_SECRET": "gh"}) as h:
        body = b'{"action": "opened", "issue": {"number": 1}}'
        headers = {
            "X-Hub-Signature-256": "sha256=" + sign("gh", body),
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "gh-1",
            "Content-Type": "application/json",
        }
        response = await h.client.post("/hooks/github", content=body, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["event_id"] == "github:gh-1"
        assert response.json()["run_ids"] == []
        unsigned = await h.client.post("/hooks/github", content=body)
        assert_error(unsigned, 401, "invalid_signature")


async def test_a_delivery_nobody_listens_to_is_recorded(api: Harness) -> None:
    body = b'{"x": 1}'
    headers = hook_headers(body, "d-4", event="unheard")
    response = await api.client.post("/hooks/testhook", content=body, headers=headers)
    assert response.status_code == 202
    assert response.json()["run_ids"] == []
    again = await api.client.post("/hooks/testhook", content=body, headers=headers)
    assert again.json() == {
        "event_id": "testhook:d-4",
        "run_ids": [],
        "resumed_run_ids": [],
        "duplicate": True,
        "skipped": [],
    }


async def test_a_delivery_answers_the_runs_it_resumed(
    new_app: Callable[..., df.Dataflows], make_api: Any
) -> None:
    app = new_app()

    @app.workflow("shipping")
    async def shipping(event: df.Event, step: df.Step) -> Any:
        where = {"data.order": event.data["order"]}
        shipped = await step.wait_for_event("shipped", "test/shipped", where=where, timeout="7d")
        return None if shipped is None else dict(shipped.data)

    async with make_api(app=app) as api:
        started = await api.client.post("/workflows/shipping/runs", json={"data": {"order": 5}})
        run_id = started.json()["run_id"]
        async with api.app.worker(concurrency=2, poll_interval=0.02):
            await waiting(api.app, run_id)
            body = json.dumps({"order": 5}).encode()
            headers = hook_headers(body, "d-ship", event="shipped")
            response = await api.client.post("/hooks/testhook", content=body, headers=headers)
            assert response.status_code == 202, response.text
            assert response.json() == {
                "event_id": "testhook:d-ship",
                "run_ids": [],
                "resumed_run_ids": [run_id],
                "duplicate": False,
                "skipped": [],
            }
            assert (await api.app.wait_for_run(run_id, timeout=15)).result == {"order": 5}
            again = await api.client.post("/hooks/testhook", content=body, headers=headers)
            assert again.json()["resumed_run_ids"] == [] and again.json()["duplicate"] is True


async def test_any_content_type_is_verified_as_raw_bytes(api: Harness) -> None:
    body = b"payload=%7B%22a%22%3A1%7D"  # form-encoded, as Slack sends: not JSON, so parse says 422
    headers = {**hook_headers(body, "d-5"), "Content-Type": "application/x-www-form-urlencoded"}
    response = await api.client.post("/hooks/testhook", content=body, headers=headers)
    assert_error(response, 422, "invalid_webhook")
    body = b'{"ok": true}'
    headers = {**hook_headers(body, "d-6"), "Content-Type": "text/plain"}
    response = await api.client.post("/hooks/testhook", content=body, headers=headers)
    assert response.status_code == 202


async def test_handshakes_are_answered_and_store_nothing(api: Harness) -> None:
    body = b"{}"
    response = await api.client.post(
        "/hooks/testhook?challenge=abc", content=body, headers=hook_headers(body, "h", "challenge")
    )
    assert response.status_code == 200
    assert response.json() == {"challenge": "abc"}
    unsigned = await api.client.post("/hooks/testhook?challenge=abc", content=body)
    assert_error(unsigned, 401, "invalid_signature")


async def test_verified_but_unstorable_deliveries_are_422(api: Harness) -> None:
    for body in (b'{"a": "\\u0000"}', b'{"a": "\\udc00"}', b"[1, 2]"):
        response = await api.client.post(
            "/hooks/testhook", content=body, headers=hook_headers(body, "d-7")
        )
        assert_error(response, 422, "invalid_webhook")
    body = b"{}"
    bad_name = await api.client.post(
        "/hooks/testhook", content=body, headers=hook_headers(body, "d-8", event="a\tb")
    )
    assert_error(bad_name, 422, "invalid_webhook")


async def test_webhook_bodies_are_size_limited(make_api: Any) -> None:
    async with make_api(max_body_bytes=100) as h:
        body = b"{" + b" " * 200 + b"}"
        response = await h.client.post(
            "/hooks/testhook", content=body, headers=hook_headers(body, "d-9")
        )
        assert_error(response, 413, "body_too_large")

        async def chunks() -> Any:
            for _ in range(100):
                yield b" " * 50

        headers = hook_headers(b"", "d-9")
        response = await h.client.post("/hooks/testhook", content=chunks(), headers=headers)
        assert_error(response, 413, "body_too_large")


async def test_webhooks_need_no_api_key(make_api: Any) -> None:
    async with make_api(api_keys=["k1"]) as h:
        body = b"{}"
        response = await h.client.post(
            "/hooks/testhook", content=body, headers=hook_headers(body, "d-10")
        )
        assert response.status_code == 202
        assert (await h.client.post("/events", json={"name": "x"})).status_code == 401


async def test_the_same_delivery_fifty_times_at_once_starts_one_run(api: Harness) -> None:
    body = json.dumps({"order": 99}).encode()
    headers = hook_headers(body, "dup-1")
    responses = await asyncio.gather(
        *(api.client.post("/hooks/testhook", content=body, headers=headers) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {202}
    answers = [r.json() for r in responses]
    assert {a["event_id"] for a in answers} == {"testhook:dup-1"}
    assert len({tuple(a["run_ids"]) for a in answers}) == 1
    assert sum(not a["duplicate"] for a in answers) == 1
    runs = await api.app.list_runs()
    assert [r.id for r in runs] == answers[0]["run_ids"]


def test_long_delivery_ids_are_hashed_to_a_stable_event_id() -> None:
    short = delivery_event_id("github", "abc")
    assert short == "github:abc"
    long_id = delivery_event_id("github", "x" * 500)
    assert len(long_id) <= 200 and long_id == delivery_event_id("github", "x" * 500)
    assert long_id != delivery_event_id("github", "x" * 501)


def test_the_test_source_is_a_source() -> None:
    source = HmacSource(SECRET)
    assert source.secrets == [SECRET]
