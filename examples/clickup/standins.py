"""Local stand-ins for the APIs the example calls, so it runs with no accounts or network.

One small HTTP server (Starlette on uvicorn) answers the endpoints ``services.py`` uses, under
one prefix per service, with the real APIs' shapes and authentication headers:

- ``GET  /azure/{org}/{project}/_apis/wit/workitems/{id}``  Azure DevOps (Basic auth, PAT)
- ``POST /clickup/api/v2/list/{list_id}/task``              ClickUp (``Authorization: <token>``)
- ``GET  /shopify/admin/api/{version}/orders/{id}.json``    Shopify (``X-Shopify-Access-Token``)
- ``POST /slack/chat.postMessage``                          Slack (``Authorization: Bearer``)

It counts every call, creates one ClickUp task per idempotency key (a repeated key gets the
task created the first time), can answer 429 with ``Retry-After`` a given number of times per
service (to show retries), and can add latency (to catch requests in flight in crash tests).
``GET /_standins/stats`` shows the counters; ``POST /_standins/rate-limit`` arms 429s.

Used in-process (``StandIns().start()``) by ``run.py`` and the end-to-end tests, or on its own:
``python examples/clickup/standins.py --port 8400`` prints the environment to point the app at it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SERVICES = ("azure", "clickup", "shopify", "slack")

#: The credentials the stand-ins accept; ``StandIns.env()`` hands the same ones to the app.
TOKENS = {
    "azure": "standin-azure-pat",
    "clickup": "pk_standin_clickup_token",
    "shopify": "shpat_standin_shopify_token",
    "slack": "xoxb-standin-slack-token",
}
LIST_ID = "901"
IDEMPOTENCY_HEADER = "x-idempotency-key"


class StandIns:
    """The stand-in server and its counters. ``start()`` serves it from a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float | dict[str, float] = 0.0,
        rate_limit: dict[str, int] | None = None,
        retry_after: float = 1.0,
    ) -> None:
        self.host, self.port = host, port
        self.latency = latency if isinstance(latency, dict) else dict.fromkeys(SERVICES, latency)
        self.rate_limit: Counter[str] = Counter(rate_limit or {})
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # requests per service, 429s included
        self.rate_limited: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.tasks: dict[str, dict[str, Any]] = {}  # ClickUp tasks by idempotency key
        self.task_requests: Counter[str] = Counter()  # create requests per idempotency key
        self.messages: list[dict[str, Any]] = []  # Slack messages posted
        self.message_requests: Counter[str] = Counter()
        self._task_ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=self._routes())

    # -- running -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        """Bind (port 0: a free one), serve in a daemon thread, and return the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="standins", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> StandIns:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment that points ``services.py`` at this server."""
        return {
            "AZURE_DEVOPS_ORG_URL": f"{self.url}/azure/demo-org",
            "AZURE_DEVOPS_PAT": TOKENS["azure"],
            "CLICKUP_API_URL": f"{self.url}/clickup",
            "CLICKUP_TOKEN": TOKENS["clickup"],
            "CLICKUP_LIST_ID": LIST_ID,
            "SHOPIFY_ADMIN_URL": f"{self.url}/shopify",
            "SHOPIFY_ACCESS_TOKEN": TOKENS["shopify"],
            "SLACK_API_URL": f"{self.url}/slack",
            "SLACK_BOT_TOKEN": TOKENS["slack"],
        }

    def arm_rate_limit(self, service: str, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``service`` with 429 and ``Retry-After``."""
        with self._lock:
            self.rate_limit[service] += times

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of the counters."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "rate_limited": dict(self.rate_limited),
                "in_flight": dict(+self.in_flight),
                "tasks": dict(self.tasks),
                "task_requests": dict(self.task_requests),
                "messages": list(self.messages),
                "message_requests": dict(self.message_requests),
            }

    # -- the endpoints ----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        wit = "/_apis/wit/workitems/{item_id:int}"
        return [
            Route("/azure/{org}/{project}" + wit, self.work_item),
            Route("/azure/{org}" + wit, self.work_item),
            Route("/clickup/api/v2/list/{list_id}/task", self.create_task, methods=["POST"]),
            Route("/shopify/admin/api/{version}/orders/{order_id:int}.json", self.order),
            Route("/slack/chat.postMessage", self.post_message, methods=["POST"]),
            Route("/_standins/stats", self.stats),
            Route("/_standins/rate-limit", self.rate_limit_endpoint, methods=["POST"]),
        ]

    async def _enter(self, service: str) -> Response | None:
        """Count the call; a 429 if one is armed for ``service``."""
        with self._lock:
            self.calls[service] += 1
            if self.rate_limit[service] > 0:
                self.rate_limit[service] -= 1
                self.rate_limited[service] += 1
                limited = True
            else:
                limited = False
        if limited:
            headers = {"Retry-After": f"{self.retry_after:g}"}
            return JSONResponse({"error": "rate limited"}, status_code=429, headers=headers)
        return None

    async def _pause(self, service: str) -> None:
        """Latency, counted as in flight (the side effect, if any, has already happened)."""
        if self.latency.get(service, 0.0) <= 0:
            return
        with self._lock:
            self.in_flight[service] += 1
        try:
            await asyncio.sleep(self.latency[service])
        finally:
            with self._lock:
                self.in_flight[service] -= 1

    async def work_item(self, request: Request) -> Response:
        if (limited := await self._enter("azure")) is not None:
            return limited
        if _basic_password(request) != TOKENS["azure"]:
            return Response(status_code=401)
        if request.query_params.get("api-version") != "7.1":
            return JSONResponse({"message": "api-version 7.1 expected"}, status_code=400)
        item_id = request.path_params["item_id"]
        await self._pause("azure")
        url = f"{self.url}/azure/{request.path_params['org']}/_apis/wit/workItems/{item_id}"
        return JSONResponse(
            {
                "id": item_id,
                "rev": 1,
                "fields": {
                    "System.TeamProject": request.path_params.get("project", "Demo"),
                    "System.WorkItemType": "Bug",
                    "System.State": "New",
                    "System.Title": f"Login times out after 30 s (#{item_id})",
                    "System.Description": "Users are signed out while typing.",
                },
                "_links": {
                    "html": {"href": f"https://dev.azure.com/demo-org/_workitems/edit/{item_id}"}
                },
                "url": url,
            }
        )

    async def create_task(self, request: Request) -> Response:
        if (limited := await self._enter("clickup")) is not None:
            return limited
        if request.headers.get("authorization") != TOKENS["clickup"]:
            return JSONResponse({"err": "Token invalid", "ECODE": "OAUTH_025"}, status_code=401)
        if request.path_params["list_id"] != LIST_ID:
            return JSONResponse({"err": "List not found", "ECODE": "ITEM_013"}, status_code=404)
        body = await request.json()
        key = request.headers.get(IDEMPOTENCY_HEADER) or f"no-key-{next(self._task_ids)}"
        with self._lock:
            self.task_requests[key] += 1
            task = self.tasks.get(key)
            if task is None:  # the side effect: once per idempotency key
                task_id = f"86{next(self._task_ids):07x}"
                task = {
                    "id": task_id,
                    "name": body["name"],
                    "status": {"status": "to do"},
                    "url": f"https://app.clickup.com/t/{task_id}",
                    "tags": [{"name": t} for t in body.get("tags", [])],
                }
                self.tasks[key] = task
        await self._pause("clickup")
        return JSONResponse(task)

    async def order(self, request: Request) -> Response:
        if (limited := await self._enter("shopify")) is not None:
            return limited
        if request.headers.get("x-shopify-access-token") != TOKENS["shopify"]:
            msg = "[API] Invalid API key or access token (unrecognized login or wrong password)"
            return JSONResponse({"errors": msg}, status_code=401)
        order_id = request.path_params["order_id"]
        await self._pause("shopify")
        return JSONResponse({"order": sample_order(order_id)})

    async def post_message(self, request: Request) -> Response:
        if (limited := await self._enter("slack")) is not None:
            return limited
        if request.headers.get("authorization") != f"Bearer {TOKENS['slack']}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        body = await request.json()
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        ts = f"{time.time():.6f}"
        with self._lock:
            self.message_requests[key] += 1
            self.messages.append({"channel": body["channel"], "text": body["text"], "key": key})
        await self._pause("slack")
        return JSONResponse({"ok": True, "channel": "C0DEMO", "ts": ts})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.snapshot())

    async def rate_limit_endpoint(self, request: Request) -> Response:
        body = await request.json()
        self.arm_rate_limit(body["service"], int(body.get("times", 1)))
        return JSONResponse({"armed": dict(self.rate_limit)})


def sample_order(order_id: int) -> dict[str, Any]:
    """An order in the Admin API's shape; the same one ``send_webhook.py`` sends as a webhook."""
    number = 1000 + order_id % 9000
    return {
        "id": order_id,
        "name": f"#{number}",
        "order_number": number,
        "email": "ada@example.com",
        "currency": "EUR",
        "total_price": f"{20 + order_id % 80}.00",
        "financial_status": "paid",
        "customer": {"id": 7, "first_name": "Ada", "last_name": "Lovelace"},
        "line_items": [
            {"id": 1, "title": "Notebook", "quantity": 2, "price": "5.00"},
            {"id": 2, "title": "Pen", "quantity": 1, "price": "2.50"},
        ],
    }


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value).decode().partition(":")[2]
    except ValueError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the example's stand-in APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per call")
    parser.add_argument(
        "--rate-limit", action="append", default=[], metavar="SERVICE=N", help="answer 429 N times"
    )
    args = parser.parse_args()
    limits = {s: int(n) for s, _, n in (v.partition("=") for v in args.rate_limit)}
    standins = StandIns(host=args.host, port=args.port, latency=args.latency, rate_limit=limits)
    standins.start()
    print(f"# stand-in APIs on {standins.url} (Ctrl-C stops); point the app at them with:")
    for name, value in standins.env().items():
        print(f"export {name}={value}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standins.stop()


if __name__ == "__main__":
    main()
