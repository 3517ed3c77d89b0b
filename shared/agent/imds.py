"""The instance metadata service (IMDS) of the machine the agent runs on: its private IP, its VM
name and managed-identity tokens. Azure's IMDS is http://169.254.169.254; the emulator's is given
to the node as ``imdsUrl`` in its agent config. Requests carry ``Metadata: true`` and never go
through a proxy, as Azure requires.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from shared.agent.retry import TRANSIENT_STATUS, TransientError

INSTANCE_API = "2021-02-01"
TOKEN_API = "2018-02-01"
TOKEN_MARGIN_S = 300.0  # a cached token is replaced this long before it expires


class ImdsError(Exception):
    """IMDS refused a request (permanent: e.g. the machine has no identity for that resource)."""


class ImdsClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"Metadata": "true"}, trust_env=False,
                                  timeout=timeout_s)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (resource, client id) -> (token, expires on)
        self._lock = threading.Lock()

    @property
    def scheduled_events_url(self) -> str:
        return f"{self.url}/metadata/scheduledevents?api-version=2020-07-01"

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as error:
            raise TransientError(f"IMDS {path}: {type(error).__name__}: {error}") from error
        if response.status_code in TRANSIENT_STATUS or response.status_code == 410:  # 410: IMDS not ready yet
            raise TransientError(f"IMDS {path}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise ImdsError(f"IMDS {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response

    def private_ip(self) -> str:
        return self._get("/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress",
                         {"api-version": INSTANCE_API, "format": "text"}).text.strip()

    def instance(self) -> dict[str, Any]:
        document: dict[str, Any] = self._get("/metadata/instance", {"api-version": INSTANCE_API}).json()
        return document

    def vm_name(self) -> str:
        return str(self.instance()["compute"]["name"])

    def token(self, resource: str, client_id: str = "") -> str:
        """An access token for `resource` of the machine's system-assigned identity, or of the
        user-assigned identity with `client_id` (cached)."""
        with self._lock:
            cached = self._tokens.get((resource, client_id))
            if cached and time.time() < cached[1] - TOKEN_MARGIN_S:
                return cached[0]
            params = {"api-version": TOKEN_API, "resource": resource, **({"client_id": client_id} if client_id else {})}
            body = self._get("/metadata/identity/oauth2/token", params).json()
            token, expires_on = str(body["access_token"]), float(body["expires_on"])
            self._tokens[(resource, client_id)] = (token, expires_on)
            return token

    def forget_token(self, resource: str, client_id: str = "") -> None:
        """The token was refused: the next call asks IMDS again."""
        with self._lock:
            self._tokens.pop((resource, client_id), None)
