"""Send the example app signed test webhooks over HTTP, and decide approvals through their links.

    python examples/clickup/send_webhook.py azure --id 42         # Azure DevOps workitem.created
    python examples/clickup/send_webhook.py shopify --id 1001     # Shopify orders/create
    python examples/clickup/send_webhook.py approve [TASK_ID]     # decide through the approval
                                                                  # link (default: every waiting
                                                                  # run; --reject, --comment)
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
import re
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


def decide(link: str, approved: bool = True, *, comment: str | None = None) -> httpx.Response:
    """Use an approval link as a person does: open its confirmation page (which decides
    nothing, and sets the CSRF cookie the form's token is bound to), then press a button."""
    with httpx.Client(timeout=10.0) as browser:
        page = browser.get(link)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if page.status_code != 200 or found is None:
            return page
        form = {"csrf": found.group(1), "decision": "approve" if approved else "reject"}
        if comment:
            form["comment"] = comment
        return browser.post(link, data=form)


def approval_links(base_url: str, api_key: str | None = None) -> dict[str, tuple[str, str]]:
    """The approve and reject links of the ``copy-to-clickup`` runs waiting for a decision, by
    ClickUp task id (read from each run's ``request_approval`` step)."""
    headers = api_headers(api_key)
    params = {"workflow_id": "copy-to-clickup", "status": "waiting", "limit": "100"}
    listed = httpx.get(f"{base_url}/runs", params=params, headers=headers, timeout=10)
    listed.raise_for_status()
    links = {}
    for summary in listed.json()["runs"]:
        if "approval" not in (summary.get("wait_reason") or ""):
            continue
        run = httpx.get(f"{base_url}/runs/{summary['id']}", headers=headers, timeout=10)
        run.raise_for_status()
        steps = {s["key"]: s for s in run.json()["steps"] if s["status"] == "completed"}
        if "create-task" in steps and "approval" in steps:
            request = steps["approval"]["output"]
            links[steps["create-task"]["output"]["id"]] = (
                request["approve_url"],
                request["reject_url"],
            )
    return links


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
    approve.add_argument("--comment", default=None)
    args = parser.parse_args(argv)

    if args.kind == "azure":
        delivery = azure_work_item_created(args.id)
    elif args.kind == "shopify":
        delivery = shopify_order_created(args.id)
    else:
        return approve_waiting(
            args.url, args.task_id, approved=not args.reject, comment=args.comment, show=args.curl
        )
    if args.curl:
        print(delivery.curl(args.url))
        return 0
    response = delivery.post(args.url)
    print(response.status_code, response.text)
    return 0 if response.is_success else 1


def approve_waiting(
    base_url: str, task_id: str | None, *, approved: bool, comment: str | None, show: bool
) -> int:
    """Decide the approval of ``task_id`` (default: of every task waiting) through its link;
    ``show``: print the links instead."""
    links = approval_links(base_url)
    if task_id is not None:
        links = {task: pair for task, pair in links.items() if task == task_id}
    if not links:
        print(
            "no copy-to-clickup run is waiting for an approval"
            + (f" of {task_id}" if task_id else "")
        )
        return 1 if task_id else 0
    for task, (approve_url, reject_url) in links.items():
        link = approve_url if approved else reject_url
        if show:
            print(f"task {task}: open {link}")
            continue
        response = decide(link, approved, comment=comment)
        print(
            f"task {task}: {response.status_code} {'decided' if response.is_success else response.text}"
        )
        if not response.is_success:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
