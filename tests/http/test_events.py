"""POST /events: accepted means committed; every malformed or wrong-shaped body is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import dataflows as df
from dataflows.http.strict_json import MAX_DEPTH
from tests.http.conftest import Harness

JSON = {"Content-Type": "application/json"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


async def test_one_event_starts_its_runs_and_is_stored(api: Harness) -> None:
    response = await api.client.post("/events", json={"name": "test/order", "data": {"n": 1}})
    assert response.status_code == 202
    body = response.json()
    assert len(body["ids"]) == 1 and len(body["run_ids"]) == 1
    assert body["resumed_run_ids"] == []
    assert body["events"] == [
        {
            "id": body["ids"][0],
            "run_ids": body["run_ids"],
            "resumed_run_ids": [],
            "duplicate": False,
            "skipped": [],
        }
    ]
    run = await api.app.get_run(body["run_ids"][0])  # committed before the answer
    assert run.workflow_id == "echo" and run.event.id == body["ids"][0]
    assert dict(run.event.data) == {"n": 1}


async def test_a_list_of_events_in_order_with_ids_and_duplicates(api: Harness) -> None:
    events = [
        {"name": "demo/a", "id": "evt-1"},
        {"name": "nobody/listens", "data": {"x": [1, 2]}},
        {"name": "demo/b", "id": "evt-1"},  # the same id again: a duplicate, nothing new
    ]
    response = await api.client.post("/events", json=events)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["ids"][0] == "evt-1" and body["ids"][2] == "evt-1"
    first, unheard, again = body["events"]
    assert len(first["run_ids"]) == 1 and not first["duplicate"]
    assert unheard["run_ids"] == [] and not unheard["duplicate"]
    assert again == {
        "id": "evt-1",
        "run_ids": first["run_ids"],
        "resumed_run_ids": [],
        "duplicate": True,
        "skipped": [],
    }
    assert body["run_ids"] == first["run_ids"] * 2

    repeat = await api.client.post("/events", json={"name": "demo/a", "id": "evt-1"})
    assert repeat.status_code == 202
    assert repeat.json()["run_ids"] == first["run_ids"]
    assert repeat.json()["events"][0]["duplicate"] is True


async def waiting(app: df.Dataflows, *run_ids: str) -> None:
    """Until every one of these runs is suspended on its wait."""
    async with asyncio.timeout(15):
        for run_id in run_ids:
            while (status := (await app.get_run(run_id)).status) != "waiting":
                assert status in ("queued", "running"), status
                await asyncio.sleep(0.02)


def approvals(app: df.Dataflows) -> df.Dataflows:
    """Adds ``approve``: waits for ``approval/decided`` about its ``task``, returns the decision."""

    @app.workflow("approve")
    async def approve(event: df.Event, step: df.Step) -> Any:
        where = {"data.task": event.data["task"]}
        decision = await step.wait_for_event(
            "decided", "approval/decided", where=where, timeout="7d"
        )
        return None if decision is None else dict(decision.data)

    return app


async def test_an_event_answers_the_runs_it_resumed(new_app: Any, make_api: Any) -> None:
    """Runs whose wait_for_event the event resolved, apart from the runs it started; a
    duplicate (or an event no wait matches) resumes none."""
    async with make_api(app=approvals(new_app())) as api:
        started = [
            await api.client.post("/workflows/approve/runs", json={"data": {"task": task}})
            for task in (1, 1, 2)
        ]
        run_ids = [r.json()["run_id"] for r in started]
        async with api.app.worker(concurrency=4, poll_interval=0.02):
            await waiting(api.app, *run_ids)
            events = [
                {"name": "approval/decided", "id": "yes-1", "data": {"task": 1, "ok": True}},
                {"name": "approval/decided", "id": "no-3", "data": {"task": 3}},
                {"name": "approval/decided", "id": "yes-1", "data": {"task": 1}},
            ]
            response = await api.client.post("/events", json=events)
            assert response.status_code == 202, response.text
            body = response.json()
            ones = sorted(run_ids[:2])
            assert body["run_ids"] == [] and body["resumed_run_ids"] == ones
            assert [(e["resumed_run_ids"], e["duplicate"]) for e in body["events"]] == [
                (ones, False),
                ([], False),
                ([], True),
            ]
            for run_id in ones:
                run = await api.app.wait_for_run(run_id, timeout=15)
                assert run.status == "completed" and run.result == {"task": 1, "ok": True}
            assert (await api.app.get_run(run_ids[2])).status == "waiting"


async def test_data_defaults_to_an_empty_object(api: Harness) -> None:
    response = await api.client.post("/events", json={"name": "test/order"})
    run = await api.app.get_run(response.json()["run_ids"][0])
    assert dict(run.event.data) == {}


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "x"',
        b"{name: 'x'}",
        b"",
        b'{"name": "x"} trailing',
        b"\xff\xfe{}",
        b'{"name": "\xe9"}',  # latin-1, not UTF-8
    ],
    ids=["truncated", "not-json", "empty", "trailing", "bom-utf16", "not-utf8"],
)
async def test_malformed_json_is_400(api: Harness, body: bytes) -> None:
    assert_error(await api.client.post("/events", content=body, headers=JSON), 400, "invalid_json")


WRONG_SHAPES: dict[str, Any] = {
    "string": "hello",
    "number": 3,
    "null": None,
    "empty-list": [],
    "no-name": {"data": {}},
    "name-not-string": {"name": 5},
    "empty-name": {"name": ""},
    "long-name": {"name": "x" * 201},
    "control-in-name": {"name": "a\nb"},
    "non-ascii-name": {"name": "bestellung/größe"},
    "reserved-name": {"name": "dataflows/run.finished"},
    "data-not-object": {"name": "x", "data": [1]},
    "data-string": {"name": "x", "data": "s"},
    "id-not-string": {"name": "x", "id": 7},
    "id-empty": {"name": "x", "id": ""},
    "id-too-long": {"name": "x", "id": "i" * 201},
    "unknown-field": {"name": "x", "extra": 1},
    "list-with-non-object": [{"name": "x"}, 3],
    "list-with-bad-event": [{"name": "x"}, {"name": "y", "oops": True}],
    "too-many": [{"name": "x"}] * 1001,
}


@pytest.mark.parametrize("body", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
async def test_wrong_shape_is_422(api: Harness, body: Any) -> None:
    content = json.dumps(body).encode()  # (httpx's json=None would send no body at all)
    response = await api.client.post("/events", content=content, headers=JSON)
    assert_error(response, 422, "invalid_request")
    assert await api.app.list_runs() == []


NOT_STORABLE = {
    "nul-in-value": b'{"name":"x","data":{"a":"b\\u0000c"}}',
    "nul-in-key": b'{"name":"x","data":{"a\\u0000":1}}',
    "nul-in-id": b'{"name":"x","id":"a\\u0000"}',
    "lone-surrogate": b'{"name":"x","data":{"a":"\\ud800"}}',
    "lone-low-surrogate-key": b'{"name":"x","data":{"\\udc00":1}}',
    "surrogate-in-list": b'{"name":"x","data":{"a":["ok","\\udfff"]}}',
    "nan": b'{"name":"x","data":{"a":NaN}}',
    "infinity": b'{"name":"x","data":{"a":Infinity}}',
    "minus-infinity": b'{"name":"x","data":{"a":-Infinity}}',
    "float-overflow": b'{"name":"x","data":{"a":1e999}}',
    "huge-integer": b'{"name":"x","data":{"a":' + b"9" * 5000 + b"}}",
    "deep": b'{"name":"x","data":{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}}",
    "very-deep": b'{"name":"x","data":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
}


@pytest.mark.parametrize("body", list(NOT_STORABLE.values()), ids=list(NOT_STORABLE))
async def test_json_the_store_cannot_keep_is_422(api: Harness, body: bytes) -> None:
    response = await api.client.post("/events", content=body, headers=JSON)
    assert_error(response, 422, "invalid_request")


async def test_nesting_up_to_the_limit_is_accepted(api: Harness) -> None:
    depth = MAX_DEPTH - 2  # the body object and "data" are two levels already
    body = b'{"name":"x","data":{"a":' + b"[" * depth + b"]" * depth + b"}}"
    response = await api.client.post("/events", content=body, headers=JSON)
    assert response.status_code == 202, response.text
    nested = b'{"name":"x","data":{"a":' + b"[" * (depth + 1) + b"]" * (depth + 1) + b"}}"
    response = await api.client.post("/events", content=nested, headers=JSON)
    assert_error(response, 422, "invalid_request")


async def test_unicode_and_escapes_that_are_fine_pass(api: Harness) -> None:
    body = '{"name":"test/order","data":{"emoji":"\\ud83d\\ude00","é":"ü","tab":"\\t"}}'
    response = await api.client.post("/events", content=body.encode(), headers=JSON)
    assert response.status_code == 202, response.text
    run = await api.app.get_run(response.json()["run_ids"][0])
    assert run.event.data == {"emoji": "😀", "é": "ü", "tab": "\t"}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_json_routes_need_a_json_content_type(api: Harness, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await api.client.post("/events", content=b'{"name":"x"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"],
)
async def test_json_content_type_variants(api: Harness, content_type: str) -> None:
    response = await api.client.post(
        "/events", content=b'{"name":"x"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 202, response.text


async def test_declared_oversized_body_is_refused_before_reading(make_api: Any) -> None:
    async with make_api(max_body_bytes=1000) as h:
        reads = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal reads
            reads += 1
            yield b"{" + b" " * 2000 + b"}"

        request = h.client.build_request(
            "POST", "/events", content=body(), headers={**JSON, "Content-Length": "2002"}
        )
        response = await h.client.send(request)
        assert_error(response, 413, "body_too_large")
        assert reads == 0, "the body was read although its declared length was over the limit"


async def test_oversized_chunked_body_is_refused_while_streaming(make_api: Any) -> None:
    async with make_api(max_body_bytes=10_000) as h:
        sent = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"name":"x","data":{"a":"'
            while sent < 10_000_000:
                sent += 1000
                yield b"a" * 1000

        request = h.client.build_request("POST", "/events", content=endless(), headers=JSON)
        assert "content-length" not in request.headers  # chunked: no length declared
        response = await h.client.send(request)
        assert_error(response, 413, "body_too_large")
        assert sent < 100_000, "the whole body was read before refusing it"


async def test_body_just_under_the_limit_is_read(make_api: Any) -> None:
    async with make_api(max_body_bytes=1000) as h:
        body = b'{"name":"x","data":{"a":"' + b"a" * 900 + b'"}}'
        assert len(body) <= 1000

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 100):
                yield body[i : i + 100]

        response = await h.client.post("/events", content=chunks(), headers=JSON)
        assert response.status_code == 202, response.text


async def test_event_data_over_the_payload_cap_is_413(new_app: Any, make_api: Any) -> None:
    async with make_api(app=new_app(max_payload_bytes=100)) as h:
        response = await h.client.post("/events", json={"name": "x", "data": {"a": "b" * 200}})
        assert_error(response, 413, "payload_too_large")


async def test_invalid_content_length_is_400(api: Harness) -> None:
    request = api.client.build_request(
        "POST", "/events", content=b'{"name":"x"}', headers={**JSON, "Content-Length": "12"}
    )
    request.headers["Content-Length"] = "twelve"
    response = await api.client.send(request)
    assert_error(response, 400, "bad_request")
