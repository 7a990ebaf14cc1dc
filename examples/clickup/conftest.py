"""The example app's tests run it with ``dataflows_env`` (the dataflows pytest plugin): a
throw-away SQLite database, a worker in the test's event loop, and virtual time."""

from __future__ import annotations

import pytest

import dataflows as df
from examples.clickup.app import app


@pytest.fixture
def dataflows_app(monkeypatch: pytest.MonkeyPatch) -> df.Dataflows:
    # Approval links are signed and point at the API: any key and URL do in tests.
    monkeypatch.setattr(app, "secret_key", "test-secret-key")
    monkeypatch.setattr(app, "public_url", "http://dataflows.test")
    return app
