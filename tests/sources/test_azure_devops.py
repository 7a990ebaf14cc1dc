from __future__ import annotations

from collections.abc import Callable

import pytest

from dataflows import EventTrigger
from dataflows.errors import WebhookInvalid, WebhookUnauthorized
from dataflows.sources import AzureDevOpsSource, azure_devops
from tests.sources import signed
from tests.sources.signed import NOW, body_of, request

CREDENTIALS = "dataflows:s3cr3t:with:colons"
WORK_ITEM_CREATED = {
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "notificationId": 3,
    "id": "d2d46fb1-dba5-403c-9373-427583f19e8c",
    "eventType": "workitem.created",
    "publisherId": "tfs",
    "message": {"text": "Bug #5 (Some great new idea!) created by Jamal Hartnett."},
    "resource": {"id": 5, "rev": 1, "fields": {"System.Title": "Some great new idea!"}},
    "resourceVersion": "1.0",
    "createdDate": "2014-07-27T15:08:54.5617513Z",
}
BODY = body_of(WORK_ITEM_CREATED)


def test_basic_credentials_verify_and_the_event_parses() -> None:
    source = AzureDevOpsSource(CREDENTIALS)
    req = signed.azure_devops(BODY, CREDENTIALS)
    source.verify(req, NOW)
    event = source.parse(req)
    assert event.name == "azure_devops/workitem.created"
    assert event.delivery_id == "d2d46fb1-dba5-403c-9373-427583f19e8c"
    assert event.data["resource"]["id"] == 5


def test_the_scheme_is_case_insensitive() -> None:
    req = signed.azure_devops(BODY, CREDENTIALS)
    lower = {"authorization": req.headers["Authorization"].replace("Basic", "basic")}
    AzureDevOpsSource(CREDENTIALS).verify(request(BODY, lower), NOW)


@pytest.mark.parametrize(
    "credentials", ["dataflows:wrong", "someone:s3cr3t:with:colons", "dataflows", ":"]
)
def test_wrong_credentials_are_refused(credentials: str) -> None:
    with pytest.raises(WebhookUnauthorized, match="match no configured"):
        AzureDevOpsSource(CREDENTIALS).verify(signed.azure_devops(BODY, credentials), NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Authorization"),
        ({"Authorization": "Bearer abc"}, "expected HTTP Basic"),
        ({"Authorization": "Basic"}, "expected HTTP Basic"),
        ({"Authorization": "Basic not*base64"}, "malformed"),
        ({"Authorization": "Basic \u00e9t\u00e9"}, "malformed"),
    ],
)
def test_missing_or_malformed_credentials_are_refused(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(WebhookUnauthorized, match=message):
        AzureDevOpsSource(CREDENTIALS).verify(request(BODY, headers), NOW)


def test_rotation_accepts_every_pair() -> None:
    source = AzureDevOpsSource("hook:old-password,hook:new-password")
    source.verify(signed.azure_devops(BODY, "hook:old-password"), NOW)
    source.verify(signed.azure_devops(BODY, "hook:new-password"), NOW)


def test_secrets_must_be_user_password_pairs() -> None:
    with pytest.raises(ValueError, match="user:password"):
        AzureDevOpsSource("hook:ok,just-a-password")


def test_the_delivery_id_falls_back_to_the_notification() -> None:
    source = AzureDevOpsSource(CREDENTIALS)
    data = {k: v for k, v in WORK_ITEM_CREATED.items() if k != "id"}
    event = source.parse(signed.azure_devops(body_of(data), CREDENTIALS))
    assert event.delivery_id == "00000000-0000-0000-0000-000000000000:3"
    del data["subscriptionId"]
    assert source.parse(signed.azure_devops(body_of(data), CREDENTIALS)).delivery_id == "3"


@pytest.mark.parametrize(
    "data",
    [
        {"eventType": "workitem.created"},
        {"eventType": "workitem.created", "notificationId": True},
        {"id": "x"},
        {"id": "x", "eventType": ""},
    ],
)
def test_parse_needs_an_event_type_and_an_id(data: dict[str, object]) -> None:
    with pytest.raises(WebhookInvalid):
        AzureDevOpsSource(CREDENTIALS).parse(signed.azure_devops(body_of(data), CREDENTIALS))


@pytest.mark.parametrize(
    ("helper", "event_type"),
    [
        (azure_devops.on_work_item_created, "workitem.created"),
        (azure_devops.on_work_item_updated, "workitem.updated"),
        (azure_devops.on_work_item_deleted, "workitem.deleted"),
        (azure_devops.on_work_item_restored, "workitem.restored"),
        (azure_devops.on_work_item_commented, "workitem.commented"),
        (azure_devops.on_code_pushed, "git.push"),
        (azure_devops.on_pull_request_created, "git.pullrequest.created"),
        (azure_devops.on_pull_request_updated, "git.pullrequest.updated"),
        (azure_devops.on_pull_request_merged, "git.pullrequest.merged"),
        (azure_devops.on_build_completed, "build.complete"),
    ],
)
def test_trigger_helpers(helper: Callable[[], EventTrigger], event_type: str) -> None:
    assert helper() == azure_devops.on(event_type) == EventTrigger(f"azure_devops/{event_type}")
