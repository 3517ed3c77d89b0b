"""Authentication over the real API: ARM's 401 codes and challenge for every way a token can be wrong,
the token never echoed, and an unreachable issuer answered 503 (transient), never 401."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from shared.emulator.issuer import Issuer
from shared.localstack.token import LOCAL_API_AUDIENCE, principal_token
from tests.api.conftest import API
from tests.authz.conftest import World, client
from tests.identity.helpers import running_issuer


def ws_url(w: World) -> str:
    return f"{w.a}?{API}"


def refused(r: httpx.Response, code: str, token: str | None = None) -> dict:
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization_uri="https://127.0.0.1:') and 'error="invalid_token"' in challenge
    if token:
        for part in (p for p in token.split(".") if len(p) > 8):
            assert part not in r.text and part not in challenge
    return error


def claims_of(w: World, who: str) -> dict:
    return {k: v for k, v in w.issuer_claims(who).items() if k not in ("iss", "iat", "nbf", "exp")}


def test_header_missing_or_not_bearer(world: World) -> None:
    with world.as_(None) as anonymous:
        error = refused(anonymous.get(ws_url(world)), "AuthenticationFailed")
        assert "'Authorization' header is missing" in error["message"]
        token = world.tokens["reader"]
        error = refused(anonymous.get(ws_url(world), headers={"Authorization": f"Basic {token}"}),
                        "AuthenticationFailed", token)
        assert "invalid format" in error["message"]
        # unknown routes and missing api-versions are not revealed to the unauthenticated
        refused(anonymous.get("/subscriptions/x/nothing-here"), "AuthenticationFailed")
        refused(anonymous.get(world.a), "AuthenticationFailed")


@pytest.mark.parametrize(("change", "code"), [
    ({"aud": "api://something-else"}, "InvalidAuthenticationTokenAudience"),
    ({"aud": "api://batchai-nodes"}, "InvalidAuthenticationTokenAudience"),  # a node's identity token
    ({"oid": None}, "InvalidAuthenticationToken"),
    ({"nbf": int(time.time()) + 3600}, "InvalidAuthenticationToken"),
])
def test_claims_refused(world: World, change: dict, code: str) -> None:
    claims = {**claims_of(world, "owner"), **change}
    token = world.issuer.sign({k: v for k, v in claims.items() if v is not None})
    with client(world.endpoint, token) as caller:
        refused(caller.get(ws_url(world)), code, token)


def test_expired_within_leeway_passes_beyond_it_fails(world: World) -> None:
    claims = claims_of(world, "owner")
    recent = world.issuer.sign(claims, 600, now=time.time() - 630)  # expired 30 s ago: within the 60 s skew
    with client(world.endpoint, recent) as caller:
        assert caller.get(ws_url(world)).status_code == 200
    old = world.issuer.sign(claims, 600, now=time.time() - 900)
    with client(world.endpoint, old) as caller:
        refused(caller.get(ws_url(world)), "ExpiredAuthenticationToken", old)


def test_unsigned_and_foreign_keys_are_refused(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    claims = {**claims_of(world, "owner"), "iss": world.issuer.url, "iat": int(time.time()),
              "nbf": int(time.time()), "exp": int(time.time()) + 600}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    hmac = jwt.encode(claims, "secret-of-the-attacker-32-bytes-long", algorithm="HS256",
                      headers={"kid": world.issuer.kid})
    impostor = Issuer.load_or_create(tmp_path_factory.mktemp("impostor"), world.issuer.url, world.issuer.tenant_id)
    foreign = impostor.sign(claims_of(world, "owner"))  # the right issuer name, another key
    for token in (unsigned, hmac, foreign, "not.a.jwt", "x"):
        with client(world.endpoint, token) as caller:
            refused(caller.get(ws_url(world)), "InvalidAuthenticationToken", token)


def test_an_unreachable_issuer_is_a_503_not_a_401(world: World, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_issuer(tmp_path_factory.mktemp("gone")) as (server, tls):
        issuer: Issuer = server.issuer
        url, ca = issuer.url, str(tls.ca_file)
    # stopped: its discovery document and keys cannot be fetched now
    monkeypatch.setenv("BATCHAI_TOKEN_ISSUER", url)
    monkeypatch.setenv("BATCHAI_TOKEN_ISSUER_CA_FILE", ca)
    token = principal_token(issuer, f"someone-{uuid.uuid4().hex[:6]}", audience=LOCAL_API_AUDIENCE)
    with client(world.endpoint, token) as caller:
        r = caller.get(ws_url(world))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "ServiceUnavailable" and r.headers["Retry-After"].isdigit()


def test_a_valid_token_of_a_principal_without_roles_is_authenticated_but_not_authorized(world: World) -> None:
    with world.as_("nobody") as caller:
        r = caller.get(ws_url(world))
    assert r.status_code == 403 and r.json()["error"]["code"] == "AuthorizationFailed", r.text
    assert "WWW-Authenticate" not in r.headers
