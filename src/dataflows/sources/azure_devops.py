"""Azure DevOps service hooks ("Web Hooks" consumer).

Azure DevOps signs nothing: the service hook sends HTTP Basic credentials you configure on it, and
each secret here is ``user:password`` (so neither may contain a comma, which separates secrets).
The credentials are compared in constant time with every configured pair.

The event is ``azure_devops/{eventType}`` (``azure_devops/workitem.created``). The delivery id is
the payload's ``id``: a GUID naming the event, kept when a notification is retried. Payloads
without one fall back to ``{subscriptionId}:{notificationId}``; ``notificationId`` alone is only a
per-subscription counter, so two subscriptions posting here would collide on it.

No replay window: a request sent again has the same body and so the same delivery id (a
duplicate already), and whoever captured one request holds the credentials and could send any
body, which no record of bodies seen would stop. Use HTTPS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from dataflows.sources.payloads import json_object, text_field, webhook_event
from dataflows.sources.signing import matches_any, require_header
from dataflows.workflow import EventTrigger, on_event


class AzureDevOpsSource(Source):
    """``POST /hooks/azure_devops``: events ``azure_devops/{eventType}``."""

    name = "azure_devops"
    #: Nothing is signed; the delivery id comes from the body (see the module's notes).
    signs_delivery_id = False

    def __init__(self, secrets: str | Sequence[str]) -> None:
        super().__init__(secrets)
        if any(":" not in s for s in self.secrets):
            raise ValueError("azure_devops secrets are HTTP Basic credentials: 'user:password'")
        self._credentials = [s.encode("utf-8") for s in self.secrets]

    def verify(self, request: WebhookRequest, now: float) -> None:
        scheme, _, token = require_header(request, "Authorization").partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise WebhookUnauthorized("expected HTTP Basic credentials in the Authorization header")
        try:
            presented = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookUnauthorized("malformed HTTP Basic credentials") from None
        if not matches_any(self._credentials, [presented]):
            raise WebhookUnauthorized(
                "the HTTP Basic credentials match no configured user:password"
            )

    def parse(self, request: WebhookRequest) -> WebhookEvent:
        data = json_object(request.body)
        return webhook_event(self.name, text_field(data, "eventType"), data, _delivery_id(data))


def _delivery_id(data: dict[str, Any]) -> str:
    event_id = data.get("id")
    if isinstance(event_id, str) and event_id:
        return event_id
    notification = data.get("notificationId")
    if isinstance(notification, int | str) and not isinstance(notification, bool):
        subscription = data.get("subscriptionId")
        prefix = f"{subscription}:" if isinstance(subscription, str) and subscription else ""
        return f"{prefix}{notification}"
    raise WebhookInvalid("the body has no 'id' or 'notificationId' to identify the delivery")


def on(event_type: str) -> EventTrigger:
    """Trigger on a service hook event type: ``azure_devops.on("git.push")``."""
    return on_event(f"azure_devops/{event_type}")


def on_work_item_created() -> EventTrigger:
    return on("workitem.created")


def on_work_item_updated() -> EventTrigger:
    return on("workitem.updated")


def on_work_item_deleted() -> EventTrigger:
    return on("workitem.deleted")


def on_work_item_restored() -> EventTrigger:
    return on("workitem.restored")


def on_work_item_commented() -> EventTrigger:
    return on("workitem.commented")


def on_code_pushed() -> EventTrigger:
    return on("git.push")


def on_pull_request_created() -> EventTrigger:
    return on("git.pullrequest.created")


def on_pull_request_updated() -> EventTrigger:
    return on("git.pullrequest.updated")


def on_pull_request_merged() -> EventTrigger:
    """A pull request merge was attempted (``git.pullrequest.merged``)."""
    return on("git.pullrequest.merged")


def on_build_completed() -> EventTrigger:
    return on("build.complete")
