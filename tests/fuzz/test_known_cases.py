"""Requests that once got a 500 (found by a property-based run against the swagger), kept as plain
cases: the swagger's ScaleSettings has no `"type": "object"`, so any JSON type may arrive there, and
a control character in the subscription id once reached the storage key."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

API = "api-version=2018-05-01"


@pytest.fixture(scope="module")
def http(api_endpoint: dict[str, str]) -> Iterator[httpx.Client]:
    verify = ssl.create_default_context(cafile=api_endpoint["ca_file"])
    with httpx.Client(base_url=api_endpoint["url"], verify=verify, timeout=30,
                      headers={"Authorization": f"Bearer {api_endpoint['token']}"}) as client:
        yield client


@pytest.fixture(scope="module")
def workspace(http: httpx.Client, api_endpoint: dict[str, str]) -> str:
    base = (f"/subscriptions/{api_endpoint['subscription_id']}/resourceGroups/{api_endpoint['resource_group']}"
            f"/providers/Microsoft.BatchAI/workspaces/fuzzcases")
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    return base


@pytest.mark.parametrize("scale", ["manual", 3, 2.5, [1], [{"manual": {"targetNodeCount": 1}}], True])
def test_scale_settings_of_another_type_is_a_400(http: httpx.Client, workspace: str, scale: object) -> None:
    body = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                           "scaleSettings": scale}}
    for method in (http.put, http.patch):
        r = method(f"{workspace}/clusters/c?{API}", json=body if method == http.put else {"properties": {
            "scaleSettings": scale}})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("InvalidRequestContent", "BadRequest"), r.text


@pytest.mark.parametrize("subscription", ["%01", "%1F", "%7F", "00000000-0000-0000-0000-00000000000%09",
                                          "x%00y"])
def test_a_control_character_in_the_subscription_id_is_a_400(http: httpx.Client, subscription: str) -> None:
    for path in (f"/subscriptions/{subscription}/providers/Microsoft.BatchAI/workspaces",
                 f"/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w"):
        r = http.get(f"{path}?{API}")
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "InvalidSubscriptionId"
