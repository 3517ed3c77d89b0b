"""Principals from token claims, and the local stack's names for principals and groups, pure."""

from __future__ import annotations

import uuid

import pytest

from shared.domain import principals

OID = "6f1c2b3a-0000-4000-8000-000000000001"


def test_a_users_token() -> None:
    p = principals.from_claims({"oid": OID.upper(), "tid": "t", "preferred_username": "alice@contoso.com",
                                "name": "Alice", "scp": "user_impersonation", "groups": ["G1", "g2"]})
    assert p == principals.Principal(OID, "t", "alice@contoso.com", frozenset({"g1", "g2"}), principals.USER)
    assert p.ids == {OID, "g1", "g2"}


@pytest.mark.parametrize(("claims", "kind", "name"), [
    ({"idtyp": "app", "appid": "app-1"}, principals.SERVICE_PRINCIPAL, "app-1"),
    ({"appid": "app-2"}, principals.SERVICE_PRINCIPAL, "app-2"),  # v1 app-only: no user claims
    ({"azp": "app-3", "upn": "bob@contoso.com"}, principals.USER, "bob@contoso.com"),
    ({}, principals.USER, OID),
])
def test_kinds_and_names(claims: dict, kind: str, name: str) -> None:
    p = principals.from_claims({"oid": OID, **claims})
    assert (p.kind, p.name) == (kind, name)


@pytest.mark.parametrize("claims", [{}, {"oid": "not-a-guid"}, {"oid": 7}, {"oid": OID, "groups": "g1"},
                                    {"oid": OID, "groups": [1]}])
def test_claims_that_name_no_principal(claims: dict) -> None:
    with pytest.raises(principals.NotAPrincipal):
        principals.from_claims(claims)


def test_local_object_ids_are_stable_per_tenant_kind_and_name() -> None:
    alice = principals.local_object_id("t1", "user", "Alice")
    assert alice == principals.local_object_id("t1", "user", "alice")
    assert alice == str(uuid.uuid5(uuid.NAMESPACE_URL, "t1/user/alice"))
    assert alice not in (principals.local_object_id("t2", "user", "alice"),
                         principals.local_object_id("t1", "group", "alice"))
    with pytest.raises(ValueError):
        principals.local_object_id("t1", "servicePrincipal", "x")
