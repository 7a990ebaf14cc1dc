"""Run the example app locally: the stand-in APIs plus ``dataflows dev`` (``scripts/run-example``).

    scripts/run-example          # serve until Ctrl-C; prints the curl commands to try
    scripts/run-example --demo   # send the webhooks, approve through the link posted to Slack,
                                 # wait, print the timelines, exit

The app runs on SQLite unless ``DATAFLOWS_DATABASE_URL`` says otherwise (``--demo`` uses a fresh
temporary file by default so its check starts clean). The third-party APIs are the stand-ins of
``standins.py``; the app finds them through the environment set here.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import send_webhook
from standins import StandIns

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
T = TypeVar("T")

DEMO_SECRETS = {
    "DATAFLOWS_AZURE_DEVOPS_SECRET": "azure:azure-secret",
    "DATAFLOWS_SHOPIFY_SECRET": "shopify-secret",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the example app with its stand-in APIs.")
    parser.add_argument("--demo", action="store_true", help="drive it end to end, then exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default 8000; --demo: a free one")
    parser.add_argument("--timeout", type=float, default=60.0, help="--demo: give up after this")
    args = parser.parse_args(argv)
    # SIGTERM (a supervisor, `timeout`) and SIGHUP (the terminal closed) unwind like Ctrl-C, so
    # the dev server is stopped too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    env = {**os.environ, **{k: v for k, v in DEMO_SECRETS.items() if not os.environ.get(k)}}
    env.setdefault("EXAMPLE_COOLDOWN", "3s" if args.demo else "30s")
    with tempfile.TemporaryDirectory(prefix="dataflows-example-") as scratch:
        if args.demo:
            env.setdefault("DATAFLOWS_DATABASE_URL", f"sqlite:///{scratch}/example.db")
        # The first Slack call is answered 429 + Retry-After, to show a rate-limited step retried.
        with StandIns(rate_limit={"slack": 1}) as standins:
            env.update(standins.env())
            port = args.port or (free_port(args.host) if args.demo else 8000)
            base_url = f"http://{args.host}:{port}"
            quiet = ["--log-level", "warning"] if args.demo else []
            server = start_dev(args.host, port, env, quiet)
            try:
                wait_until(lambda: healthy(base_url, server), 30, "the dev server to answer")
                if args.demo:
                    return demo(base_url, standins, args.timeout)
                print_instructions(base_url, standins, env)
                return server.wait()
            except KeyboardInterrupt:
                return 0
            finally:
                stop(server)


# -- the dev server --------------------------------------------------------------------------------


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_dev(
    host: str, port: int, env: dict[str, str], extra: list[str]
) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("dataflows")
    app = os.path.relpath(HERE / "app.py", ROOT)
    command = [str(exe), "dev", app, "--host", host, "--port", str(port), *extra]
    print(f"$ {' '.join(command[1:])}", flush=True)
    # Its own session: Ctrl-C reaches only this script, which forwards a single SIGINT (a
    # second one would make `dataflows dev` exit at once instead of shutting down gracefully).
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True
    )


def healthy(base_url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"dataflows dev exited with {server.returncode}")
    try:
        return bool(httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200)
    except httpx.HTTPError:
        return False


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGINT (a graceful shutdown), then SIGKILL if it is not gone within 15 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=15)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too slow, or Ctrl-C again
        server.kill()
        server.wait()


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


# -- interactive --------------------------------------------------------------------------------


def print_instructions(base_url: str, standins: StandIns, env: dict[str, str]) -> None:
    python = os.path.relpath(sys.executable, Path.cwd())
    script = os.path.relpath(HERE / "send_webhook.py", Path.cwd())
    azure = send_webhook.azure_work_item_created(42)
    shopify = send_webhook.shopify_order_created(1001)
    print(
        f"""
The example app is running on {base_url} (stand-in APIs on {standins.url}).
Cooldown after approval: {env["EXAMPLE_COOLDOWN"]} (EXAMPLE_COOLDOWN; 24h in production).

1. An Azure DevOps work item is created (Basic auth, as configured on the service hook):

{azure.curl(base_url)}

2. A Shopify order is created (X-Shopify-Hmac-Sha256 = base64 HMAC-SHA256 of the body):

{shopify.curl(base_url)}

3. The copy-to-clickup run now asks for approval: the stand-in Slack got a message with
   an approve and a reject link (see {standins.url}/_standins/stats). Open one in a browser (the page
   decides nothing until you press a button), or decide from here:

{python} {script} approve            # every task waiting; or: approve TASK_ID [--reject]

Watch runs with `curl {base_url}/runs` or `.venv/bin/dataflows runs list`.
The same script signs and sends the webhooks: {python} {script} azure --id 43
Ctrl-C stops.
""",
        flush=True,
    )


# -- --demo ---------------------------------------------------------------------------------------


def demo(base_url: str, standins: StandIns, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    azure = send_webhook.azure_work_item_created(42)
    shopify = send_webhook.shopify_order_created(1001)
    azure_runs = post(azure, base_url, "Azure DevOps workitem.created")
    shopify_runs = post(shopify, base_url, "Shopify orders/create")
    again = post(shopify, base_url, "the same Shopify delivery again")
    ok = again == shopify_runs  # a redelivery is deduplicated: same event, same runs

    copy_run = azure_runs[0]
    run = poll(base_url, copy_run, deadline, lambda r: _step(r, "create-task") is not None)
    task = _step(run, "create-task")["output"]  # type: ignore[index]
    print(f"task {task['id']} created; the run asks for approval on Slack", flush=True)
    # The approver clicks the link the stand-in Slack received: the confirmation page, then
    # the Approve button (the page's form, with its CSRF token).
    link = wait_until(lambda: approve_link(standins), timeout, "the approval link on Slack")
    print(f"Slack got the approval link {link}", flush=True)
    preview = httpx.get(link, timeout=5)  # a chat app's preview: decides nothing
    decided = send_webhook.decide(link, approved=True, comment="looks good")
    print(f"GET (preview) -> {preview.status_code}; approve -> {decided.status_code}", flush=True)
    again = send_webhook.decide(link, approved=False)
    print(f"the same link again -> {again.status_code} (a link works once)", flush=True)
    ok = ok and preview.status_code == 200 and decided.status_code == 200
    ok = ok and again.status_code == 409

    runs = [poll(base_url, rid, deadline, _finished) for rid in (*azure_runs, *shopify_runs)]
    for run in runs:
        print_timeline(run)
    stats = standins.snapshot()
    print(f"stand-in calls: {stats['calls']}; answered 429: {stats['rate_limited']}")
    print(f"ClickUp create requests per idempotency key: {stats['task_requests']}")

    ok = ok and all(r["status"] == "completed" for r in runs)
    ok = ok and list(stats["task_requests"].values()) == [1] and len(stats["messages"]) == 2
    ok = ok and runs[0]["result"]["approved"] is True
    print("demo OK" if ok else "demo FAILED", flush=True)
    return 0 if ok else 1


def approve_link(standins: StandIns) -> str | None:
    """The approve link of the first Slack message that has one."""
    for message in standins.snapshot()["messages"]:
        found = re.search(r"https?://\S+/approvals/\S+decision=approve", message["text"])
        if found:
            return found.group(0)
    return None


def post(delivery: send_webhook.Delivery, base_url: str, what: str) -> list[str]:
    response = delivery.post(base_url)
    print(f"POST {delivery.path} ({what}) -> {response.status_code} {response.text}", flush=True)
    response.raise_for_status()
    body = response.json()
    return list(body.get("run_ids", []))


def get_run(base_url: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/runs/{run_id}", headers=send_webhook.api_headers(), timeout=5)
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


def poll(
    base_url: str, run_id: str, deadline: float, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    while True:
        run = get_run(base_url, run_id)
        if done(run):
            return run
        if run["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
            print_timeline(run)
            raise RuntimeError(f"run {run_id} is {run['status']}, not done in time")
        time.sleep(0.1)


def _finished(run: dict[str, Any]) -> bool:
    return bool(run["status"] == "completed")


def _step(run: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((s for s in run["steps"] if s["key"] == key and s["status"] == "completed"), None)


def print_timeline(run: dict[str, Any]) -> None:
    print(f"\nrun {run['id']} ({run['workflow_id']}): {run['status']}")
    for s in run["steps"]:
        took = s.get("duration_seconds")
        took_text = f"{took * 1000:9.1f} ms" if isinstance(took, (int, float)) else " " * 12
        print(
            f"  {s['key']:<18} {s['kind']:<6} {s['status']:<10} attempts={s['attempts']} {took_text}"
        )
    print(f"  result: {run['result'] if run['status'] == 'completed' else run.get('error')}")


if __name__ == "__main__":
    sys.exit(main())
