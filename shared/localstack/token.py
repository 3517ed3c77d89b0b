"""Tokens of the local stack's principals, signed with the stack's issuer key (`<state>/local/issuer/`).

The stack stands in for Entra ID: names become object ids through `principals.local_object_id`, and
tokens look like Entra ID v2 access tokens for the API's audience (`LOCAL_API_AUDIENCE`). The owner
principal (`OWNER_NAME`) is the configured owner of the stack's service (BATCHAI_OWNER_OBJECT_IDS); its
token is kept in the endpoint file, so a client that reads that file needs nothing else. It is valid
for 30 days and renewed whenever the stack is started (or found running) with less than 29 days left.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import jwt

from shared.domain.principals import GROUP, USER, local_object_id
from shared.emulator.issuer import Issuer

LOCAL_API_AUDIENCE = "api://batchai"
OWNER_NAME = "owner"
OWNER_LIFETIME_S = 30 * 24 * 3600
RENEW_WHEN_LEFT_S = 29 * 24 * 3600


def issuer_dir(state_dir: Path) -> Path:
    return state_dir / "local" / "issuer"


def tenant_of(issuer_url: str) -> str:
    """The tenant of an Entra-style issuer URL: `https://HOST/{tenant}/v2.0`."""
    return urlsplit(issuer_url).path.strip("/").split("/")[0]


def stack_issuer(state_dir: Path, issuer_url: str) -> Issuer:
    """The stack's issuer (its key exists once the stack's local cloud has started)."""
    return Issuer.load_or_create(issuer_dir(state_dir), issuer_url, tenant_of(issuer_url))


def owner_object_id(tenant_id: str) -> str:
    return local_object_id(tenant_id, USER, OWNER_NAME)


def api_settings(issuer_url: str) -> dict[str, str]:
    """The trigger host's app settings for callers' tokens: the API's audience and the stack's owner."""
    return {"BATCHAI_API_AUDIENCE": LOCAL_API_AUDIENCE,
            "BATCHAI_OWNER_OBJECT_IDS": owner_object_id(tenant_of(issuer_url))}


def principal_token(issuer: Issuer, name: str, groups: Iterable[str] = (), lifetime_s: int = 3600,
                    audience: str = LOCAL_API_AUDIENCE, now: float | None = None) -> str:
    """An access token for the user `name` (a member of the named groups), as Entra ID v2 would issue it."""
    oid = local_object_id(issuer.tenant_id, USER, name)
    claims = {"aud": audience, "sub": oid, "oid": oid, "name": name, "preferred_username": name,
              "groups": [local_object_id(issuer.tenant_id, GROUP, g) for g in groups],
              "scp": "user_impersonation", "idtyp": "user", "ver": "2.0"}
    return issuer.sign(claims, lifetime_s, now)


def _left_s(issuer: Issuer, token: str, now: float) -> float:
    """Seconds the token stays valid for the stack's API; 0 when it is not (another key, issuer or principal)."""
    try:
        claims = jwt.decode(token, issuer.key.public_key(), algorithms=["RS256"], audience=LOCAL_API_AUDIENCE,
                            issuer=issuer.url, options={"verify_exp": False})
    except jwt.PyJWTError:
        return 0.0
    if claims.get("oid") != owner_object_id(issuer.tenant_id):
        return 0.0
    return max(0.0, float(claims.get("exp", 0)) - now)


def owner_token(state_dir: Path, issuer_url: str, known: str | None, now: float | None = None) -> str:
    """The owner's token: `known` while it has at least 29 days left, else a new one valid for 30 days."""
    issuer = stack_issuer(state_dir, issuer_url)
    at = time.time() if now is None else now
    if known and _left_s(issuer, known, at) >= RENEW_WHEN_LEFT_S:
        return known
    return principal_token(issuer, OWNER_NAME, lifetime_s=OWNER_LIFETIME_S, now=at)
