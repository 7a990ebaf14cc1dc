"""Send the example app signed test webhooks, and approvals, over HTTP.

    python examples/clickup/send_webhook.py azure --id 42         # Azure DevOps workitem.created
    python examples/clickup/send_webhook.py shopify --id 1001     # Shopify orders/create
    python examples/clickup/send_webhook.py approve [TASK_ID]     # the approval a run waits for
                                                                  # (default: every waiting one)
    python examples/clickup/send_webhook.py azure --id 42 --curl  # print the curl command instead

Requests are authenticated the way the providers do it: Azure DevOps with the Basic credentials
configured on the service hook (``DATAFLOWS_AZURE_DEVOPS_SECRET=user:password``), Shopify with a
base64 HMAC-SHA256 of the raw body (``DATAFLOWS_SHOPIFY_SECRET``). With several secrets
configured (comma-separated, for rotation) the first one signs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shlex
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Delivery:
    """One HTTP request: where to, which headers, and the exact body bytes that were signed."""

    path: str
    headers: dict[str, str]
    body: bytes

    def post(self, base_url: str, timeout: float = 10.0) -> httpx.Response:
        return httpx.post(
            base_url + self.path, headers=self.headers, content=self.body, timeout=timeout
        )

    def curl(self, base_url: str) -> str:
        parts = ["curl", "-sS", "-X", "POST", base_url + self.path]
        for name, value in self.headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-binary", self.body.decode()]
        return " ".join(shlex.quote(p) for p in parts)


def _first_secret(env_name: str, default: str) -> str:
    value = os.environ.get(env_name, "") or default
    return value.split(",")[0].strip()


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def azure_work_item_created(
    item_id: int,
    *,
    project: str = "Demo",
    secret: str | None = None,
    delivery_id: str | None = None,
) -> Delivery:
    """A ``workitem.created`` service-hook delivery, as Azure DevOps sends it."""
    credentials = secret or _first_secret("DATAFLOWS_AZURE_DEVOPS_SECRET", "azure:azure-secret")
    payload = {
        "subscriptionId": "00000000-0000-0000-0000-000000000001",
        "notificationId": 1,
        "id": delivery_id or str(uuid.uuid4()),
        "eventType": "workitem.created",
        "publisherId": "tfs",
        "message": {"text": f"Bug #{item_id} created"},
        "resource": {
            "id": item_id,
            "rev": 1,
            "fields": {
                "System.TeamProject": project,
                "System.WorkItemType": "Bug",
                "System.State": "New",
                "System.Title": f"Login times out after 30 s (#{item_id})",
            },
        },
        "resourceVersion": "1.0",
        "createdDate": "2025-01-15T09:30:00Z",
    }
    token = base64.b64encode(credentials.encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
    return Delivery("/hooks/azure_devops", headers, _body(payload))


def shopify_order_created(
    order_id: int,
    *,
    shop: str = "demo-shop.myshopify.com",
    secret: str | None = None,
    delivery_id: str | None = None,
) -> Delivery:
    """An ``orders/create`` webhook, signed as Shopify signs it."""
    key = secret or _first_secret("DATAFLOWS_SHOPIFY_SECRET", "shopify-secret")
    number = 1000 + order_id % 9000
    payload = {
        "id": order_id,
        "name": f"#{number}",
        "order_number": number,
        "email": "ada@example.com",
        "currency": "EUR",
        "total_price": f"{20 + order_id % 80}.00",
        "financial_status": "pending",  # stale on purpose: the run fetches the current order
        "customer": {"id": 7, "first_name": "Ada", "last_name": "Lovelace"},
    }
    body = _body(payload)
    signature = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": delivery_id or str(uuid.uuid4()),
        "X-Shopify-API-Version": "2024-10",
    }
    return Delivery("/hooks/shopify", headers, body)


def api_headers(api_key: str | None = None) -> dict[str, str]:
    """Bearer authentication for the API's own routes, when API keys are configured."""
    key = api_key or _first_secret("DATAFLOWS_API_KEYS", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def approval(task_id: str, approved: bool = True, *, api_key: str | None = None) -> Delivery:
    """``POST /events`` with the ``approval/decided`` event a ``copy-to-clickup`` run waits for."""
    headers = {"Content-Type": "application/json", **api_headers(api_key)}
    payload = {"name": "approval/decided", "data": {"task_id": task_id, "approved": approved}}
    return Delivery("/events", headers, _body(payload))


def waiting_tasks(base_url: str, api_key: str | None = None) -> list[str]:
    """The ClickUp task ids of the ``copy-to-clickup`` runs waiting for their approval."""
    headers = api_headers(api_key)
    params = {"workflow_id": "copy-to-clickup", "status": "waiting", "limit": "100"}
    listed = httpx.get(f"{base_url}/runs", params=params, headers=headers, timeout=10)
    listed.raise_for_status()
    tasks = []
    for summary in listed.json()["runs"]:
        if "approval" not in (summary.get("wait_reason") or ""):
            continue
        run = httpx.get(f"{base_url}/runs/{summary['id']}", headers=headers, timeout=10)
        run.raise_for_status()
        for step in run.json()["steps"]:
            if step["key"] == "create-task" and step["status"] == "completed":
                tasks.append(step["output"]["id"])
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("DATAFLOWS_URL", DEFAULT_URL))
    parser.add_argument("--curl", action="store_true", help="print the curl command, send nothing")
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("azure", help="Azure DevOps workitem.created").add_argument(
        "--id", type=int, default=42
    )
    kinds.add_parser("shopify", help="Shopify orders/create").add_argument(
        "--id", type=int, default=1001
    )
    approve = kinds.add_parser("approve", help="approve (or --reject) a ClickUp task")
    approve.add_argument("task_id", nargs="?", help="default: every task waiting for approval")
    approve.add_argument("--reject", action="store_true")
    args = parser.parse_args(argv)

    if args.kind == "azure":
        delivery = azure_work_item_created(args.id)
    elif args.kind == "shopify":
        delivery = shopify_order_created(args.id)
    elif args.task_id:
        delivery = approval(args.task_id, approved=not args.reject)
    else:
        return approve_all(args.url, approved=not args.reject, curl=args.curl)
    if args.curl:
        print(delivery.curl(args.url))
        return 0
    response = delivery.post(args.url)
    print(response.status_code, response.text)
    return 0 if response.is_success else 1


def approve_all(base_url: str, *, approved: bool, curl: bool) -> int:
    tasks = waiting_tasks(base_url)
    if not tasks:
        print("no copy-to-clickup run is waiting for an approval")
    for task_id in tasks:
        delivery = approval(task_id, approved=approved)
        if curl:
            print(delivery.curl(base_url))
            continue
        response = delivery.post(base_url)
        print(f"task {task_id}: {response.status_code} {response.text}")
        if not response.is_success:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
