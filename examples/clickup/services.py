"""Real HTTP clients for the services the example calls: Azure DevOps, ClickUp, Shopify, Slack.

Every base URL and credential comes from the environment and defaults to the real service, so
this code runs unchanged against the real APIs; ``scripts/run-example`` points the URLs at the
local stand-ins in ``standins.py`` instead.

How HTTP failures map onto dataflows' retries:

- 429: ``df.RetryAfterError(Retry-After)`` — the step is retried no sooner than the server asked;
- other 4xx (bad token, unknown list …): ``df.NonRetriableError`` — retrying cannot help;
- 5xx, timeouts, connection errors: a plain exception — retried with exponential backoff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

import dataflows as df

#: Sent with every create call; a callee that honours it deduplicates retried requests.
IDEMPOTENCY_HEADER = "X-Idempotency-Key"


@dataclass(frozen=True)
class Settings:
    """Where the services live and how to authenticate, read from the environment."""

    azure_org_url: str
    azure_project: str | None
    azure_pat: str
    clickup_url: str
    clickup_token: str
    clickup_list_id: str
    shopify_admin_url: str
    shopify_token: str
    shopify_api_version: str
    slack_url: str
    slack_token: str
    slack_channel: str
    timeout: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            azure_org_url=env("AZURE_DEVOPS_ORG_URL", "https://dev.azure.com/your-org").rstrip("/"),
            azure_project=env("AZURE_DEVOPS_PROJECT") or None,
            azure_pat=env("AZURE_DEVOPS_PAT", ""),
            clickup_url=env("CLICKUP_API_URL", "https://api.clickup.com").rstrip("/"),
            clickup_token=env("CLICKUP_TOKEN", ""),
            clickup_list_id=env("CLICKUP_LIST_ID", "901"),
            shopify_admin_url=(
                env("SHOPIFY_ADMIN_URL")
                or f"https://{env('SHOPIFY_SHOP_DOMAIN', 'your-shop.myshopify.com')}"
            ).rstrip("/"),
            shopify_token=env("SHOPIFY_ACCESS_TOKEN", ""),
            shopify_api_version=env("SHOPIFY_API_VERSION", "2024-10"),
            slack_url=env("SLACK_API_URL", "https://slack.com/api").rstrip("/"),
            slack_token=env("SLACK_BOT_TOKEN", ""),
            slack_channel=env("SLACK_CHANNEL", "#orders"),
            timeout=float(env("EXAMPLE_HTTP_TIMEOUT", "10")),
        )


def settings() -> Settings:
    # Read at call time, not import time, so a worker picks up the environment it runs in.
    return Settings.from_env()


def check(response: httpx.Response) -> None:
    """Raise the error that tells dataflows whether (and when) to retry a failed call."""
    if response.is_success:
        return
    what = f"{response.request.method} {response.request.url} -> {response.status_code}"
    if response.status_code == 429:
        raise df.RetryAfterError(_retry_after(response), f"{what} (rate limited)")
    if 400 <= response.status_code < 500 and response.status_code not in (408, 409):
        raise df.NonRetriableError(f"{what}: {response.text[:300]}")
    raise RuntimeError(f"{what}: {response.text[:300]}")


def _retry_after(response: httpx.Response) -> float:
    """Seconds from ``Retry-After`` (ClickUp sends ``X-RateLimit-Reset`` instead); 1 s if absent."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


def _client(cfg: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=cfg.timeout, headers={"User-Agent": "dataflows-example/0.1"})


# -- Azure DevOps ---------------------------------------------------------------------------------


async def get_work_item(item_id: int, project: str | None = None) -> dict[str, Any]:
    """GET a work item (REST 7.1). A personal access token authenticates as the Basic password."""
    cfg = settings()
    project = cfg.azure_project or project
    base = f"{cfg.azure_org_url}/{project}" if project else cfg.azure_org_url
    url = f"{base}/_apis/wit/workitems/{int(item_id)}"
    async with _client(cfg) as http:
        response = await http.get(url, params={"api-version": "7.1"}, auth=("", cfg.azure_pat))
    check(response)
    item = response.json()
    fields = item.get("fields", {})
    return {
        "id": item["id"],
        "title": fields.get("System.Title", ""),
        "type": fields.get("System.WorkItemType", ""),
        "state": fields.get("System.State", ""),
        "description": fields.get("System.Description", ""),
        "url": item.get("_links", {}).get("html", {}).get("href", item.get("url", "")),
    }


# -- ClickUp ----------------------------------------------------------------------------------------


async def create_task(item: dict[str, Any]) -> dict[str, Any]:
    """POST a task to a ClickUp list (API v2; the personal token is the whole Authorization).

    The step's idempotency key goes along, so a callee that honours it (the stand-in does)
    creates one task however often the step is retried or replayed after a crash. The real
    ClickUp API has no idempotency header: see docs/example.md for closing that window there.
    """
    cfg = settings()
    key = df.current_step().idempotency_key
    body = {
        "name": f"[{item['type'] or 'Work item'} {item['id']}] {item['title']}",
        "markdown_description": f"{item['description']}\n\nFrom Azure DevOps: {item['url']}",
        "tags": ["azure-devops"],
    }
    headers = {"Authorization": cfg.clickup_token, IDEMPOTENCY_HEADER: key}
    url = f"{cfg.clickup_url}/api/v2/list/{cfg.clickup_list_id}/task"
    async with _client(cfg) as http:
        response = await http.post(url, json=body, headers=headers)
    check(response)
    task = response.json()
    return {"id": task["id"], "name": task["name"], "url": task.get("url", "")}


# -- Shopify -----------------------------------------------------------------------------------------


async def get_order(order_id: int) -> dict[str, Any]:
    """GET the order from the Admin REST API: webhook payloads can be stale by the time a
    run gets to them, so the run works from the current order."""
    cfg = settings()
    url = f"{cfg.shopify_admin_url}/admin/api/{cfg.shopify_api_version}/orders/{int(order_id)}.json"
    async with _client(cfg) as http:
        response = await http.get(url, headers={"X-Shopify-Access-Token": cfg.shopify_token})
    check(response)
    order = response.json()["order"]
    customer = order.get("customer") or {}
    return {
        "id": order["id"],
        "name": order.get("name", ""),
        "total": f"{order.get('total_price', '0')} {order.get('currency', '')}".strip(),
        "customer": " ".join(
            p for p in (customer.get("first_name"), customer.get("last_name")) if p
        ),
        "items": sum(int(line.get("quantity", 0)) for line in order.get("line_items", [])),
        "financial_status": order.get("financial_status", ""),
    }


# -- Slack -------------------------------------------------------------------------------------------


async def post_message(text: str) -> dict[str, Any]:
    """chat.postMessage. Slack answers 429 with ``Retry-After`` when a channel is rate
    limited, and 200 with ``{"ok": false}`` for most other errors."""
    cfg = settings()
    key = df.current_step().idempotency_key
    headers = {"Authorization": f"Bearer {cfg.slack_token}", IDEMPOTENCY_HEADER: key}
    body = {"channel": cfg.slack_channel, "text": text}
    async with _client(cfg) as http:
        response = await http.post(f"{cfg.slack_url}/chat.postMessage", json=body, headers=headers)
    check(response)
    answer = response.json()
    if not answer.get("ok"):
        raise df.NonRetriableError(f"slack: {answer.get('error', 'unknown error')}")
    return {"channel": answer.get("channel", cfg.slack_channel), "ts": answer["ts"]}
