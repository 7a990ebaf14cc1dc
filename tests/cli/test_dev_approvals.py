"""``dataflows dev`` and approval links: a secret key kept per working directory, dev's URL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import dataflows as df
from dataflows.cli.dev import DEV_SECRET_FILE, dev_approval_settings


def test_dev_makes_a_secret_key_once_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAFLOWS_SECRET_KEY", raising=False)
    monkeypatch.delenv("DATAFLOWS_PUBLIC_URL", raising=False)
    app = df.Dataflows("sqlite:///:memory:")
    said = dev_approval_settings(app, "http://127.0.0.1:8000")
    assert app.public_url == "http://127.0.0.1:8000"
    assert app.secret_key and len(app.secret_key) >= 32
    assert str(DEV_SECRET_FILE) in said
    assert stat.S_IMODE((tmp_path / DEV_SECRET_FILE).stat().st_mode) == 0o600
    again = df.Dataflows("sqlite:///:memory:")
    dev_approval_settings(again, "http://127.0.0.1:9000")
    assert again.secret_key == app.secret_key


def test_settings_of_the_app_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = df.Dataflows("sqlite:///:memory:", secret_key="mine", public_url="https://x.example")
    assert dev_approval_settings(app, "http://127.0.0.1:8000") == "configured by the app"
    assert (app.secret_key, app.public_url) == ("mine", "https://x.example")
    assert not (tmp_path / DEV_SECRET_FILE).exists()
