"""Reading a Key Vault secret through Key Vault's REST API, as a node or the service does it:
``GET {secretUrl}?api-version=7.4`` with a bearer token for `RESOURCE` -> ``{"value": ...}``.

A token is sent only to an allowed vault (`host_allowed`: host patterns where "*" is one DNS
label, Azure's ``*.vault.azure.net`` by default; the local stack adds its own vault), over https:
a secret URL naming any other host would hand the caller's vault token to that host.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

RESOURCE = "https://vault.azure.net"
API_VERSION = "7.4"
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class VaultRefused(Exception):
    """The secret cannot be read (permanent: not allowed, not found, forbidden); str() says why."""


class VaultUnavailable(ConnectionError):
    """The vault could not be reached or answered with a transient error (try again)."""


def host_allowed(netloc: str, patterns: Sequence[str]) -> bool:
    """`netloc` (host[:port]) fits one of the patterns, where "*" stands for one DNS label."""
    labels = netloc.lower().split(".")
    for pattern in patterns:
        wanted = pattern.lower().split(".")
        if len(wanted) == len(labels) and all(w == "*" and bool(label) and ":" not in label or w == label
                                              for w, label in zip(wanted, labels, strict=True)):
            return True
    return False


def check_secret_url(url: str, hosts: Sequence[str]) -> str:
    """The URL when it is ``https://<allowed vault>/secrets/<name>[/<version>]``; else VaultRefused."""
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    if (parts.scheme != "https" or not host_allowed(parts.netloc, hosts) or parts.username or parts.query
            or parts.fragment or segments[0] != "secrets" or len(segments) not in (2, 3) or not all(segments)):
        raise VaultRefused(f"{url!r} is not a secret URL of an allowed vault ({', '.join(hosts)})")
    return url


def read_secret(secret_url: str, token: str, hosts: Sequence[str], ca_file: str = "",
                timeout_s: float = 30.0) -> str:
    """The secret's value. Raises VaultRefused (permanent) or VaultUnavailable (transient)."""
    url = check_secret_url(secret_url, hosts)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        response = httpx.get(url, params={"api-version": API_VERSION}, timeout=timeout_s, verify=verify,
                             headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError as error:
        raise VaultUnavailable(f"Key Vault at {urlsplit(url).netloc}: {type(error).__name__}: {error}") from error
    if response.status_code in TRANSIENT_STATUS:
        raise VaultUnavailable(f"Key Vault answered HTTP {response.status_code}")
    if response.status_code != 200:
        raise VaultRefused(f"Key Vault answered HTTP {response.status_code}: {_error_message(response)}")
    try:
        value = response.json().get("value")
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise VaultRefused("Key Vault's answer holds no secret value")
    return value


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code', '')}: {error.get('message', '')}"[:300]
    except (ValueError, AttributeError):
        return response.text[:300]
