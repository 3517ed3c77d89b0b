"""The local stack's owner token: an Entra-style JWT of the stack's issuer for the owner principal, kept
while it has 29 days left and renewed otherwise (or when it is not the stack's)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from shared.emulator.issuer import Issuer
from shared.localstack.token import (
    LOCAL_API_AUDIENCE,
    OWNER_LIFETIME_S,
    api_settings,
    issuer_dir,
    owner_object_id,
    owner_token,
    principal_token,
    tenant_of,
)

TENANT = "3c2a9e6d-0000-4000-8000-000000000001"
URL = f"https://127.0.0.1:7072/{TENANT}/v2.0"
DAY = 86400


def claims(issuer: Issuer, token: str) -> dict:
    return jwt.decode(token, issuer.key.public_key(), algorithms=["RS256"], audience=LOCAL_API_AUDIENCE,
                      issuer=URL, options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})


def test_the_owner_token_is_kept_while_fresh_and_renewed_when_old(tmp_path: Path) -> None:
    issuer = Issuer.load_or_create(issuer_dir(tmp_path), URL, TENANT)
    now = time.time()
    first = owner_token(tmp_path, URL, None, now=now)
    c = claims(issuer, first)
    assert c["oid"] == owner_object_id(TENANT) and c["exp"] - c["iat"] == OWNER_LIFETIME_S
    assert api_settings(URL) == {"BATCHAI_API_AUDIENCE": LOCAL_API_AUDIENCE,
                                 "BATCHAI_OWNER_OBJECT_IDS": owner_object_id(TENANT)}
    assert owner_token(tmp_path, URL, first, now=now + 0.9 * DAY) == first  # 29.1 days left
    renewed = owner_token(tmp_path, URL, first, now=now + 1.1 * DAY)
    assert renewed != first and claims(issuer, renewed)["exp"] > c["exp"]


def test_a_token_that_is_not_the_stacks_owners_is_replaced(tmp_path: Path) -> None:
    issuer = Issuer.load_or_create(issuer_dir(tmp_path), URL, TENANT)
    now = time.time()
    someone = principal_token(issuer, "someone", lifetime_s=OWNER_LIFETIME_S, now=now)
    other_port = owner_token(tmp_path, URL.replace("7072", "7099"), None, now=now)  # the issuer moved
    for known in ("a-random-string", someone, other_port):
        token = owner_token(tmp_path, URL, known, now=now)
        assert token != known and claims(issuer, token)["oid"] == owner_object_id(tenant_of(URL))
