"""Fixtures of the ingress tests: raw HTTP against the in-process API (real Azurite), each test in a
subscription of its own."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

API = {"api-version": "2018-05-01"}
PROVIDER = "providers/Microsoft.BatchAI"


@pytest.fixture(scope="session")
def http(api_endpoint: dict[str, str]) -> Iterator[httpx.Client]:
    verify = ssl.create_default_context(cafile=api_endpoint["ca_file"])
    with httpx.Client(base_url=api_endpoint["url"], verify=verify, timeout=30,
                      headers={"Authorization": f"Bearer {api_endpoint['token']}"}) as c:
        yield c


@pytest.fixture()
def sub() -> str:
    return str(uuid.uuid4())


def ws_path(sub: str, ws: str, rg: str = "demo") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/{PROVIDER}/workspaces/{ws}"


def put(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.put(path, params=API, json=body)


def workspace(http: httpx.Client, sub: str, ws: str = "w", **properties: Any) -> str:
    body: dict[str, Any] = {"location": "local"}
    if properties:
        body["properties"] = properties
    r = put(http, ws_path(sub, ws), body)
    assert r.status_code in (200, 201), r.text
    return ws_path(sub, ws)


def cluster_body(nodes: int = 0, size: str = "STANDARD_D1_V2", **properties: Any) -> dict[str, Any]:
    return {"properties": {"vmSize": size, "userAccountSettings": {"adminUserName": "u"},
                           "scaleSettings": {"manual": {"targetNodeCount": nodes}}, **properties}}


def job_body(cluster_id: str, **properties: Any) -> dict[str, Any]:
    return {"properties": {"cluster": {"id": cluster_id}, "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                           "customToolkitSettings": {"commandLine": "true"}, **properties}}


def error_of(r: httpx.Response) -> dict[str, Any]:
    return dict(r.json()["error"])
