"""Fixtures of the API tests: the official SDK and raw HTTP against the in-process API (real Azurite)."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.batchai import BatchAI

from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

API = "api-version=2018-05-01"


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="session")
def client(api_endpoint: dict[str, str]) -> Iterator[BatchAI]:
    sdk = BatchAI(StaticToken(api_endpoint["token"]), api_endpoint["subscription_id"], base_url=api_endpoint["url"],
                  connection_verify=api_endpoint["ca_file"], polling_interval=0.2)
    yield sdk
    sdk.close()


@pytest.fixture(scope="session")
def http(api_endpoint: dict[str, str]) -> Iterator[httpx.Client]:
    verify = ssl.create_default_context(cafile=api_endpoint["ca_file"])
    with httpx.Client(base_url=api_endpoint["url"], verify=verify, timeout=30,
                      headers={"Authorization": f"Bearer {api_endpoint['token']}"}) as c:
        yield c


@pytest.fixture()
def rg(api_endpoint: dict[str, str]) -> str:
    return api_endpoint["resource_group"]


@pytest.fixture()
def ws_path(api_endpoint: dict[str, str]) -> Callable[[str], str]:
    def path(ws: str) -> str:
        return (f"/subscriptions/{api_endpoint['subscription_id']}/resourceGroups/{api_endpoint['resource_group']}"
                f"/providers/Microsoft.BatchAI/workspaces/{ws}")
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
