"""Key Vault secret references in requests: a ``*SecretReference`` names a secret by its URL, which
must be ``https://<vault host>/secrets/<name>[/<version>]`` on a vault host the service allows
(`Settings.key_vault_hosts`: Azure's ``*.vault.azure.net`` by default, the local stack's own vault
stand-in there). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from shared.domain.errors import invalid

DEFAULT_VAULT_HOSTS = ("*.vault.azure.net",)
SECRET_NAME_RE = re.compile(r"[0-9A-Za-z-]{1,127}")
SECRET_VERSION_RE = re.compile(r"[0-9A-Za-z]{1,64}")
LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"



def _host_allowed(netloc: str, patterns: Sequence[str]) -> bool:
    """`netloc` (host[:port], lower case) fits a pattern where '*' stands for one DNS label."""
    for pattern in patterns:
        regex = LABEL.join(re.escape(p) for p in pattern.lower().split("*"))
        if re.fullmatch(regex, netloc):
            return True
    return False


def check_secret_url(url: Any, path: str, vault_hosts: Sequence[str]) -> None:
    """A Key Vault secret URL: ``https://<vault host>/secrets/<name>[/<version>]``, the host one of the
    allowed vault hosts, no user, query or fragment."""
    rule = f"must be https://<vault>/secrets/<name>[/<version>] on {' or '.join(vault_hosts)}."
    if not isinstance(url, str):
        raise invalid(path, rule)
    parts = urlsplit(url)
    segments = parts.path.split("/")
    ok = (parts.scheme == "https" and "@" not in parts.netloc and not parts.query and not parts.fragment
          and url.isascii() and _host_allowed(parts.netloc.lower(), vault_hosts)
          and len(segments) in (3, 4) and segments[0] == "" and segments[1] == "secrets"
          and SECRET_NAME_RE.fullmatch(segments[2]) is not None
          and (len(segments) == 3 or SECRET_VERSION_RE.fullmatch(segments[3]) is not None))
    if not ok:
        raise invalid(path, rule)


def secret_references(value: Any, path: str, vault_hosts: Sequence[str]) -> None:
    """Every Key Vault reference (``*SecretReference``) in a request points at an allowed vault."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}"
            if k.endswith("SecretReference") and isinstance(v, dict):
                check_secret_url(v.get("secretUrl"), f"{where}.secretUrl", vault_hosts)
            else:
                secret_references(v, where, vault_hosts)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            secret_references(v, f"{path}[{i}]", vault_hosts)
