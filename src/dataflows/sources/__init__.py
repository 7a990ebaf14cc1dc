"""Webhook sources: verify a provider's request and turn it into an event.

A source is enabled in code (``app.add_source(GitHubSource("secret"))``) or by its environment
variable ``DATAFLOWS_{SOURCE}_SECRET`` (:func:`enabled_sources`); a source that signs the body
but not the delivery id takes its replay window from ``DATAFLOWS_{SOURCE}_REPLAY_WINDOW``.
Trigger helpers live in each provider's module: ``shopify.on("orders/create")``,
``azure_devops.on_work_item_created()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataflows.sources import azure_devops, generic, github, shopify, slack, stripe
from dataflows.sources.azure_devops import AzureDevOpsSource
from dataflows.sources.base import (
    BodySignedSource,
    Source,
    WebhookEvent,
    WebhookRequest,
    replay_window_seconds,
)
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


def replay_window_variable(name: str) -> str:
    """The variable with built-in source ``name``'s replay window:
    ``DATAFLOWS_GITHUB_REPLAY_WINDOW``."""
    return f"DATAFLOWS_{name.upper()}_REPLAY_WINDOW"


def enabled_sources(
    configured: Mapping[str, Source], environ: Mapping[str, str]
) -> dict[str, Source]:
    """The sources to serve: ``configured`` (from code) plus every built-in whose
    ``DATAFLOWS_{SOURCE}_SECRET`` is set and non-empty. A source configured in code wins. For a
    source that signs only the body, ``DATAFLOWS_{SOURCE}_REPLAY_WINDOW`` (a duration; empty or
    ``0`` for none) replaces the default replay window of 24 hours.

    Raises ``ValueError`` naming the variable when its value is not a usable secret or window.
    """
    enabled: dict[str, Source] = {}
    for name, source_class in BUILTIN.items():
        variable = secret_variable(name)
        secret = environ.get(variable, "").strip()
        if not secret or name in configured:
            continue
        options: dict[str, Any] = {}
        if source_class is not GenericSource and issubclass(source_class, BodySignedSource):
            options = _replay_window(name, environ)
        try:
            if source_class is GenericSource:
                enabled[name] = generic.from_environ(secret, environ, name)
            else:
                enabled[name] = source_class(secret, **options)
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None
    enabled.update(configured)
    return enabled


def _replay_window(name: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """``replay_window`` as ``DATAFLOWS_{NAME}_REPLAY_WINDOW`` sets it (``None``: off); no
    option when it is unset."""
    variable = replay_window_variable(name)
    value = environ.get(variable)
    if value is None:
        return {}
    try:
        return {"replay_window": replay_window_seconds(value)}
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}") from None


__all__ = [
    "BUILTIN",
    "AzureDevOpsSource",
    "BodySignedSource",
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
    "replay_window_variable",
    "secret_variable",
    "shopify",
    "slack",
    "stripe",
]
