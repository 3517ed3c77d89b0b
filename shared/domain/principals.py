"""Who calls: the principal a validated bearer token names, and the local stack's names for principals.

Pure: claims in, `Principal` out. Entra ID access tokens name their subject by `oid` (object id) and
`tid` (tenant); app-only tokens carry `idtyp: app` (v2) or no user claims beside `appid`/`azp`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USER, SERVICE_PRINCIPAL, GROUP = "user", "servicePrincipal", "group"
# ARM's principalType for each kind of principal a role assignment names.
PRINCIPAL_TYPES = {USER: "User", SERVICE_PRINCIPAL: "ServicePrincipal", GROUP: "Group"}


class NotAPrincipal(ValueError):
    """The claims name no principal (no `oid`): str() says what is missing."""


@dataclass(frozen=True)
class Principal:
    object_id: str  # the token's oid
    tenant_id: str  # tid
    name: str  # preferred_username / name / appid, for messages
    groups: frozenset[str] = frozenset()  # group object ids (the token's `groups` claim)
    kind: str = USER  # "user" | "servicePrincipal"

    @property
    def ids(self) -> frozenset[str]:
        """Every object id a role assignment may name to reach this principal (itself and its groups)."""
        return frozenset({self.object_id.lower(), *(g.lower() for g in self.groups)})


def local_object_id(tenant_id: str, kind: str, name: str) -> str:
    """The local stack's stand-in for Microsoft Graph: a stable object id for a principal or group name.

    `batchai stack token` and `batchai role assignment create --assignee NAME` both use it, so names
    resolve the same on both sides. kind: "user" | "group".
    """
    if kind not in (USER, GROUP):
        raise ValueError(f"kind must be {USER!r} or {GROUP!r}, not {kind!r}")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{kind}/{name.lower()}"))


def is_guid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except (ValueError, AttributeError, TypeError):
        return False


def _kind(claims: Mapping[str, Any]) -> str:
    if claims.get("idtyp") == "app":
        return SERVICE_PRINCIPAL
    if claims.get("idtyp") == "user" or "scp" in claims:
        return USER
    has_user_name = any(claims.get(c) for c in ("preferred_username", "upn", "unique_name"))
    return USER if has_user_name or not (claims.get("appid") or claims.get("azp")) else SERVICE_PRINCIPAL


def from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal of a validated token's claims; NotAPrincipal when it names none."""
    oid = claims.get("oid")
    if not isinstance(oid, str) or not is_guid(oid):
        raise NotAPrincipal("the access token has no object id ('oid' claim)")
    groups = claims.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise NotAPrincipal("the access token's 'groups' claim is not a list of object ids")
    name = next((str(claims[c]) for c in ("preferred_username", "upn", "unique_name", "name", "appid", "azp")
                 if claims.get(c)), oid)
    return Principal(object_id=oid.lower(), tenant_id=str(claims.get("tid") or ""), name=name,
                     groups=frozenset(g.lower() for g in groups), kind=_kind(claims))
