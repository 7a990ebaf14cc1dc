"""Webhook sources: verify a provider's request and turn it into an event.

A source is enabled in code (``app.add_source(GitHubSource("secret"))``) or by its environment
variable ``DATAFLOWS_{SOURCE}_SECRET`` (:func:`enabled_sources`). Trigger helpers live in each
provider's module: ``shopify.on("orders/create")``, ``azure_devops.on_work_item_created()``.
"""

from __future__ import annotations

from collections.abc import Mapping

from dataflows.sources import azure_devops, generic, github, shopify, slack, stripe
from dataflows.sources.azure_devops import AzureDevOpsSource
from dataflows.sources.base import Source, WebhookEvent, WebhookRequest
from dataflows.sources.generic import GenericSource
from dataflows.sources.github import GitHubSource
from dataflows.sources.shopify import ShopifySource
from dataflows.sources.slack import SlackSource
from dataflows.sources.stripe import StripeSource

#: The built-in sources by name (``POST /hooks/{name}``). ``GenericSource`` also takes a name.
BUILTIN: dict[str, type[Source]] = {
    "shopify": ShopifySource,
    "github": GitHubSource,
    "stripe": StripeSource,
    "slack": SlackSource,
    "azure_devops": AzureDevOpsSource,
    "generic": GenericSource,
}


def secret_variable(name: str) -> str:
    """The environment variable that enables built-in source ``name``: ``DATAFLOWS_GITHUB_SECRET``."""
    return f"DATAFLOWS_{name.upper()}_SECRET"


def enabled_sources(
    configured: Mapping[str, Source], environ: Mapping[str, str]
) -> dict[str, Source]:
    """The sources to serve: ``configured`` (from code) plus every built-in whose
    ``DATAFLOWS_{SOURCE}_SECRET`` is set and non-empty. A source configured in code wins.

    Raises ``ValueError`` naming the variable when its value is not a usable secret.
    """
    enabled: dict[str, Source] = {}
    for name, source_class in BUILTIN.items():
        variable = secret_variable(name)
        secret = environ.get(variable, "").strip()
        if not secret or name in configured:
            continue
        try:
            if source_class is GenericSource:
                enabled[name] = generic.from_environ(secret, environ, name)
            else:
                enabled[name] = source_class(secret)
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None
    enabled.update(configured)
    return enabled


__all__ = [
    "BUILTIN",
    "AzureDevOpsSource",
    "GenericSource",
    "GitHubSource",
    "ShopifySource",
    "SlackSource",
    "Source",
    "StripeSource",
    "WebhookEvent",
    "WebhookRequest",
    "azure_devops",
    "enabled_sources",
    "generic",
    "github",
    "secret_variable",
    "shopify",
    "slack",
    "stripe",
]
