from __future__ import annotations

import pytest

from dataflows.sources import (
    BUILTIN,
    AzureDevOpsSource,
    GenericSource,
    GitHubSource,
    ShopifySource,
    SlackSource,
    Source,
    StripeSource,
    enabled_sources,
    secret_variable,
)


def test_the_builtin_sources() -> None:
    builtin = {
        "shopify": ShopifySource,
        "github": GitHubSource,
        "stripe": StripeSource,
        "slack": SlackSource,
        "azure_devops": AzureDevOpsSource,
        "generic": GenericSource,
    }
    assert builtin == BUILTIN
    assert secret_variable("azure_devops") == "DATAFLOWS_AZURE_DEVOPS_SECRET"


def test_nothing_is_enabled_by_default() -> None:
    assert enabled_sources({}, {}) == {}


def test_every_builtin_is_enabled_by_its_secret_variable() -> None:
    environ = {
        "DATAFLOWS_SHOPIFY_SECRET": "shp",
        "DATAFLOWS_GITHUB_SECRET": "old, new",
        "DATAFLOWS_STRIPE_SECRET": "whsec_a,whsec_b",
        "DATAFLOWS_SLACK_SECRET": "sl",
        "DATAFLOWS_AZURE_DEVOPS_SECRET": "hook:pw1,hook:pw2",
        "DATAFLOWS_GENERIC_SECRET": "gen",
        "DATAFLOWS_GENERIC_HEADER": "X-Custom-Signature",
        "DATAFLOWS_OTHER_SECRET": "ignored",
    }
    sources = enabled_sources({}, environ)
    assert {name: type(s) for name, s in sources.items()} == BUILTIN
    assert all(name == s.name for name, s in sources.items())
    assert sources["github"].secrets == ["old", "new"]
    assert sources["azure_devops"].secrets == ["hook:pw1", "hook:pw2"]
    generic = sources["generic"]
    assert isinstance(generic, GenericSource) and generic.header == "X-Custom-Signature"


def test_code_configuration_wins() -> None:
    github = GitHubSource("from-code")
    acme = GenericSource("acme", "acme-secret")
    configured: dict[str, Source] = {"github": github, "acme": acme}
    environ = {"DATAFLOWS_GITHUB_SECRET": "from-env", "DATAFLOWS_SLACK_SECRET": "sl"}
    sources = enabled_sources(configured, environ)
    assert sources["github"] is github and sources["acme"] is acme
    assert set(sources) == {"github", "acme", "slack"}


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_blank_variables_enable_nothing(value: str) -> None:
    assert enabled_sources({}, {"DATAFLOWS_GITHUB_SECRET": value}) == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAFLOWS_AZURE_DEVOPS_SECRET", "password-without-user"),
        ("DATAFLOWS_GITHUB_SECRET", ",,"),
        ("DATAFLOWS_GENERIC_SECRET", "s"),
    ],
)
def test_unusable_variables_are_reported_by_name(variable: str, value: str) -> None:
    environ = {variable: value, "DATAFLOWS_GENERIC_ALGORITHM": "md5"}
    with pytest.raises(ValueError, match=variable):
        enabled_sources({}, environ)


def test_body_signed_sources_have_a_replay_window_of_24_hours() -> None:
    environ = {f"DATAFLOWS_{name.upper()}_SECRET": "u:p" for name in BUILTIN}
    sources = enabled_sources({}, environ)
    windows = {name: (s.signs_delivery_id, s.replay_window) for name, s in sources.items()}
    assert windows == {
        "shopify": (False, 86400.0),
        "github": (False, 86400.0),
        "generic": (False, 86400.0),
        "stripe": (True, None),
        "slack": (True, None),
        "azure_devops": (False, None),
    }


@pytest.mark.parametrize(
    ("value", "seconds"), [("10m", 600.0), ("90", 90.0), ("1h30m", 5400.0), ("0", None), ("", None)]
)
def test_the_replay_window_from_the_environment(value: str, seconds: float | None) -> None:
    environ = {
        "DATAFLOWS_GITHUB_SECRET": "g",
        "DATAFLOWS_SHOPIFY_SECRET": "s",
        "DATAFLOWS_GENERIC_SECRET": "x",
        "DATAFLOWS_GITHUB_REPLAY_WINDOW": value,
        "DATAFLOWS_GENERIC_REPLAY_WINDOW": value,
    }
    sources = enabled_sources({}, environ)
    assert sources["github"].replay_window == sources["generic"].replay_window == seconds
    assert sources["shopify"].replay_window == 86400.0


@pytest.mark.parametrize("value", ["-5", "soon", "-1h"])
def test_an_unusable_replay_window_is_reported_by_name(value: str) -> None:
    environ = {"DATAFLOWS_SHOPIFY_SECRET": "s", "DATAFLOWS_SHOPIFY_REPLAY_WINDOW": value}
    with pytest.raises(ValueError, match="DATAFLOWS_SHOPIFY_REPLAY_WINDOW"):
        enabled_sources({}, environ)


@pytest.mark.parametrize("window", [-1, "-2s", "nope", True])
def test_an_unusable_replay_window_in_code_is_refused(window: object) -> None:
    with pytest.raises(ValueError):
        GitHubSource("k", replay_window=window)  # type: ignore[arg-type]
