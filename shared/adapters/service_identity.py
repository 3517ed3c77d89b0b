"""The service's own identity (the Function app's managed identity): access tokens for a resource.

In Azure: azure-identity's `ManagedIdentityCredential` (the app's identity endpoint). On the local
stack (`Settings.local_issuer_dir` set): tokens signed by the stack's token issuer for a principal
that stands for the app, as the app's identity endpoint would hand them out. Tokens are cached
until shortly before they expire.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import Settings

MARGIN_S = 300.0
LOCAL_LIFETIME_S = 3600

_cache: dict[tuple[str, str], tuple[str, float]] = {}
_lock = threading.Lock()


def local_principal(issuer: str) -> str:
    """The object id of the service's identity on a local stack (stable per issuer)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}#batchai-service"))


def _local_token(settings: Settings, resource: str) -> tuple[str, float]:
    from shared.emulator.issuer import Issuer  # the local stack's issuer: never imported in Azure

    if not settings.token_issuer:
        raise RuntimeError("BATCHAI_LOCAL_ISSUER_DIR is set but BATCHAI_TOKEN_ISSUER is not")
    tenant = urlsplit(settings.token_issuer).path.strip("/").split("/")[0]
    issuer = Issuer.load_or_create(Path(settings.local_issuer_dir), settings.token_issuer, tenant)
    principal = local_principal(settings.token_issuer)
    now = time.time()
    token = issuer.sign({"aud": resource, "sub": principal, "oid": principal, "appid": principal, "idtyp": "app"},
                        lifetime_s=LOCAL_LIFETIME_S, now=now)
    return token, now + LOCAL_LIFETIME_S


def _managed_identity_token(resource: str) -> tuple[str, float]:
    from azure.identity import ManagedIdentityCredential

    with ManagedIdentityCredential() as credential:
        token = credential.get_token(f"{resource}/.default")
    return token.token, float(token.expires_on)


def token(settings: Settings, resource: str) -> str:
    key = (settings.local_issuer_dir, resource)
    with _lock:
        cached = _cache.get(key)
        if cached and time.time() < cached[1] - MARGIN_S:
            return cached[0]
        found = _local_token(settings, resource) if settings.local_issuer_dir else _managed_identity_token(resource)
        _cache[key] = found
        return found[0]
