"""API keys: bearer auth on every route but webhooks and health checks, rotation, constant time."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from dataflows.http.auth import key_matches, parse_api_keys
from tests.http.test_events import assert_error

PROTECTED = [
    ("POST", "/events"),
    ("GET", "/workflows"),
    ("POST", "/workflows/echo/runs"),
    ("GET", "/runs"),
    ("GET", "/runs/abc"),
    ("POST", "/runs/abc/cancel"),
    ("POST", "/runs/cancel"),
    ("POST", "/runs/abc/retry"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


async def test_without_keys_the_api_is_open(make_api: Any) -> None:
    async with make_api(api_keys=[]) as h:
        assert (await h.client.get("/workflows")).status_code == 200
        document = (await h.client.get("/openapi.json")).json()
        assert "security" not in document


async def test_every_protected_route_refuses_a_missing_key(make_api: Any) -> None:
    async with make_api(api_keys=["k1"]) as h:
        for method, path in PROTECTED:
            response = await h.client.request(method, path, json={"name": "x"})
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert await h.app.list_runs() == []


async def test_wrong_keys_and_schemes_are_refused(make_api: Any) -> None:
    async with make_api(api_keys=["k1"]) as h:
        for value in ("Bearer k2", "Bearer k1x", "Bearer ", "Basic k1", "k1", "Bearer K1"):
            response = await h.client.get("/workflows", headers={"Authorization": value})
            assert_error(response, 401, "unauthorized")
        wrong = await h.client.get("/workflows", headers={"Authorization": "Bearer nope"})
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]


async def test_two_keys_at_once_for_rotation(make_api: Any) -> None:
    async with make_api(api_keys=["old-key", "new-key"]) as h:
        for key in ("old-key", "new-key"):
            headers = {"Authorization": f"Bearer {key}"}
            assert (await h.client.get("/workflows", headers=headers)).status_code == 200
            lower = {"Authorization": f"bearer {key}"}  # the scheme is case-insensitive
            assert (await h.client.get("/runs", headers=lower)).status_code == 200
            response = await h.client.post("/events", json={"name": "demo/x"}, headers=headers)
            assert response.status_code == 202
        document = (
            await h.client.get("/openapi.json", headers={"Authorization": "Bearer new-key"})
        ).json()
        assert document["security"] == [{"bearerAuth": []}]


async def test_keys_from_the_environment(make_api: Any) -> None:
    environ = {"DATAFLOWS_API_KEYS": " alpha , beta,,"}
    async with make_api(api_keys=None, environ=environ) as h:
        assert (await h.client.get("/runs")).status_code == 401
        ok = await h.client.get("/runs", headers={"Authorization": "Bearer beta"})
        assert ok.status_code == 200


async def test_health_checks_need_no_key(make_api: Any) -> None:
    async with make_api(api_keys=["k1"]) as h:
        assert (await h.client.get("/healthz")).status_code == 200
        assert (await h.client.get("/readyz")).status_code == 200


def test_parse_api_keys() -> None:
    assert parse_api_keys("") == ()
    assert parse_api_keys(" a, b ,,c ") == ("a", "b", "c")


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest against each key, with no early exit on a match."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    keys = [b"first", b"second", b"third"]
    assert key_matches("first", keys)
    assert calls == [(b"first", k) for k in keys]
    calls.clear()
    assert not key_matches("fourth", keys)
    assert len(calls) == 3
    assert not key_matches("x", [])
