"""The local token issuer: its persisted key, its documents served over https, tokens others can validate."""

from __future__ import annotations

import json
import ssl
import stat
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.adapters.tokens import TokenPolicy, TokenValidator
from shared.emulator.issuer import KEY_FILE, Issuer, IssuerServer, thumbprint
from shared.localstack.tls import ensure_tls
from tests.identity.helpers import TENANT, running_issuer


def _get(url: str, ca_file: Path | None) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return response.status, json.load(response)


def test_the_key_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    first = Issuer.load_or_create(tmp_path / "issuer", "https://127.0.0.1:1/t/v2.0", TENANT)
    key_file = tmp_path / "issuer" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = Issuer.load_or_create(tmp_path / "issuer", "https://127.0.0.1:1/t/v2.0", TENANT)
    assert second.kid == first.kid
    assert sorted(p.name for p in (tmp_path / "issuer").iterdir()) == [KEY_FILE]  # no temporary left behind
    other = Issuer.load_or_create(tmp_path / "elsewhere", "https://127.0.0.1:1/t/v2.0", TENANT)
    assert other.kid != first.kid


def test_concurrent_first_callers_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        kids = set(pool.map(lambda _: Issuer.load_or_create(tmp_path, "", TENANT).kid, range(6)))
    assert kids == {Issuer.load_or_create(tmp_path, "", TENANT).kid}


def test_the_key_id_is_the_rfc7638_thumbprint() -> None:
    # The example key of RFC 7638 section 3.1 and the thumbprint the RFC gives for it.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
         "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7"
         "d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44"
         "-csFCur-kEgU8awapJzKnqDKgw")
    modulus = int.from_bytes(jwt.utils.base64url_decode(n), "big")
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_sign_adds_the_standard_claims_unless_given(tmp_path: Path) -> None:
    issuer = Issuer.load_or_create(tmp_path, "https://127.0.0.1:1/t/v2.0", TENANT)
    token = issuer.sign({"aud": "api://x", "sub": "s"}, lifetime_s=600, now=1_800_000_000)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == issuer.kid
    claims = jwt.decode(token, issuer.key.public_key(), algorithms=["RS256"], audience="api://x",
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert claims == {"iss": "https://127.0.0.1:1/t/v2.0", "iat": 1_800_000_000, "nbf": 1_800_000_000,
                      "exp": 1_800_000_600, "tid": TENANT, "aud": "api://x", "sub": "s"}
    given = issuer.sign({"tid": "other", "nbf": 1_800_000_100}, now=1_800_000_000)
    claims = jwt.decode(given, options={"verify_signature": False})
    assert claims["tid"] == "other" and claims["nbf"] == 1_800_000_100


def test_an_issuer_without_url_cannot_sign(tmp_path: Path) -> None:
    issuer = Issuer.load_or_create(tmp_path, "", TENANT)
    with pytest.raises(RuntimeError, match="URL"):
        issuer.sign({"sub": "s"})


def test_discovery_and_keys_are_served_over_https_trusted_with_the_stack_ca(tmp_path: Path) -> None:
    with running_issuer(tmp_path) as (server, tls):
        issuer = server.issuer
        assert issuer.url == f"{server.url}/{TENANT}/v2.0"
        status, document = _get(f"{issuer.url}/.well-known/openid-configuration", tls.ca_file)
        assert status == 200
        assert document["issuer"] == issuer.url
        assert document["jwks_uri"] == f"{server.url}/{TENANT}/discovery/v2.0/keys"
        assert document["authorization_endpoint"] == f"{server.url}/{TENANT}/oauth2/v2.0/authorize"
        assert document["token_endpoint"] == f"{server.url}/{TENANT}/oauth2/v2.0/token"
        assert document["id_token_signing_alg_values_supported"] == ["RS256"]
        assert "code" in document["response_types_supported"] and document["subject_types_supported"]
        status, keys = _get(document["jwks_uri"], tls.ca_file)
        assert status == 200
        [key] = keys["keys"]
        assert key["kid"] == issuer.kid and key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256"
        public = jwt.PyJWK(key).key
        assert public.public_numbers() == issuer.key.public_key().public_numbers()
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(document["jwks_uri"], None)  # the system CAs do not vouch for the local stack
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(f"{server.url}/{TENANT}/oauth2/v2.0/nothing", tls.ca_file)
        assert missing.value.code == 404


def test_a_token_it_signs_validates_with_keys_fetched_over_https(tmp_path: Path) -> None:
    with running_issuer(tmp_path) as (server, tls):
        issuer = server.issuer
        validator = TokenValidator(TokenPolicy(issuer.url, frozenset({"api://batchai-nodes"}), str(tls.ca_file)))
        claims = validator.validate(issuer.sign({"aud": "api://batchai-nodes", "sub": "node-0"}))
        assert claims["sub"] == "node-0" and claims["iss"] == issuer.url
        keys_path = f"/{TENANT}/discovery/v2.0/keys"
        assert server.requested(f"/{TENANT}/v2.0/.well-known/openid-configuration") == 1
        assert server.requested(keys_path) == 1


def test_a_fixed_url_is_kept_and_routes_can_be_added(tmp_path: Path) -> None:
    from shared.emulator.issuer import HttpReply

    tls = ensure_tls(tmp_path / "tls")
    issuer = Issuer.load_or_create(tmp_path / "issuer", "https://localhost:1/fixed/v2.0", TENANT)
    server = IssuerServer(issuer, tls)
    server.route("GET", "/fixed/oauth2/v2.0/authorize", lambda request: HttpReply.json(200, request.query))
    server.start()
    try:
        assert issuer.url == "https://localhost:1/fixed/v2.0"
        status, body = _get(f"{server.url}/fixed/oauth2/v2.0/authorize?client_id=c", tls.ca_file)
        assert (status, body) == (200, {"client_id": "c"})
    finally:
        server.stop()
