"""Browser test fixtures: Debian's chromium driven by Playwright, against a real ``dataflows dev``.

Chromium comes from Debian's package (Playwright's own browser download is not used): when
``/usr/bin/chromium`` is missing, the session installs it with ``apt-get``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
KEY = "alice:alice-browser-key"
SECRET = "dashboard-browser-secret"
#: Set to 1 to rewrite docs/images/dashboard-*.png from the browser tests.
SCREENSHOTS = os.environ.get("DATAFLOWS_SCREENSHOTS") == "1"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing."""
    if not CHROMIUM.exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.fail("the browser tests need /usr/bin/chromium (apt-get install chromium)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run([apt, "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run(install, env=env, capture_output=True, check=True)
    return CHROMIUM


@dataclass
class DevServer:
    url: str
    fail_flag: Path
    process: subprocess.Popen[bytes]

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )

    def send(self, name: str, data: dict[str, Any]) -> str:
        """Send an event; the id of the first run it started ("" for none)."""
        with self.api() as client:
            answer = client.post("/events", json={"name": name, "data": data})
            answer.raise_for_status()
            run_ids: list[str] = answer.json()["run_ids"]
            return run_ids[0] if run_ids else ""

    def run(self, run_id: str) -> dict[str, Any]:
        with self.api() as client:
            answer = client.get(f"/runs/{run_id}")
            answer.raise_for_status()
            run: dict[str, Any] = answer.json()
            return run

    def wait_status(self, run_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] != status:
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} stayed {run['status']}, expected {status}")
            time.sleep(0.05)
        return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_dev(tmp: Path) -> Iterator[DevServer]:
    """``dataflows dev`` serving tests/dashboard/browser_app.py on SQLite, with an API key."""
    port = _free_port()
    flag = tmp / "fail-flag"
    env = {
        **os.environ,
        "DATAFLOWS_DATABASE_URL": f"sqlite:///{tmp / 'dashboard.db'}",
        "DATAFLOWS_API_KEYS": KEY,
        "DATAFLOWS_SECRET_KEY": SECRET,
        "DASHBOARD_TEST_FAIL_FLAG": str(flag),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    app = str(Path(__file__).with_name("browser_app.py"))
    log = (tmp / "dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dataflows.cli", "dev", app, "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("dataflows dev did not start:\n" + (tmp / "dev.log").read_text())
        time.sleep(0.1)
    try:
        yield DevServer(url, flag, process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"), full_page=True)
