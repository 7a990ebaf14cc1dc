"""Webhook intake: ``dataflows serve`` answering Azure DevOps service hooks under real HTTP load.

Two loads, one after the other, against the same server:
  * maximum throughput: wrk, closed loop (``CONNECTIONS`` connections, as fast as answers come);
  * a fixed offered load (default 1,000 requests/s): ``bench.loadgen``, open loop, latency from
    each request's due time.
Each 202 means the event and its run are committed (accepted means durable); afterwards the stored events are
counted to check that every 202 left its event behind.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.dbs import drop_schema, scalar
from bench.procs import ROOT, start_process, stop_process

PATH = "/hooks/azure_devops"
LUA = ROOT / "bench" / "wrk" / "azure_devops.lua"
CONNECTIONS = 64
WARMUP_SECONDS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dataflows serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("dataflows serve did not become healthy")


def wrk(url: str, seconds: float) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; bench/run does it)")
    duration = max(1, round(seconds))  # wrk takes whole seconds
    done = subprocess.run(
        [
            exe,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{duration}s",
            "-s",
            str(LUA),
            url,
            "--",
            secrets.token_hex(6),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    line = lines[0]
    raw = json.loads(line.removeprefix("WRK_JSON "))
    failed = raw["non_2xx_3xx"] + raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
    failed += raw["timeouts"]
    return {
        "requests": raw["requests"],
        "failed": failed,
        "accepted_rps": (raw["requests"] - raw["non_2xx_3xx"]) / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def loadgen(url: str, rate: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", url, str(rate), str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def webhook(url: str, seconds: float, rate: float, workers: int) -> dict[str, Any]:
    from bench.apps.webhook_app import make_app

    schema = f"bench_{secrets.token_hex(4)}"
    _migrate(make_app(url, schema))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dataflows = str(Path(sys.executable).with_name("dataflows"))
    app_file = str(ROOT / "bench" / "apps" / "webhook_app.py")
    env = {"BENCH_DATABASE_URL": url, "BENCH_SCHEMA": schema}
    server = start_process(
        [
            dataflows,
            "serve",
            app_file,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        wait_healthy(base, server)
        warmup = wrk(base + PATH, WARMUP_SECONDS)
        maximum = wrk(base + PATH, seconds)
        time.sleep(2)
        fixed = loadgen(base + PATH, rate, seconds)
    finally:
        stop_process(server)
    stored = scalar(url, f"SELECT count(*) FROM {schema}.events")
    drop_schema(url, schema)
    accepted = sum(r["requests"] - r["failed"] for r in (warmup, maximum))
    accepted += fixed["statuses"].get("202", 0)
    return {
        "workers": workers,
        "max": maximum,
        "fixed": fixed,
        "accepted": accepted,
        "stored_events": stored,
        "all_accepted_stored": stored >= accepted,
    }


def _migrate(app: Any) -> None:
    async def migrate() -> None:
        async with app:
            pass

    asyncio.run(migrate())
