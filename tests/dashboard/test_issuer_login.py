"""The local issuer's sign-in (authorization code with PKCE): a person picks a principal and groups on its
page, the client exchanges the one-time code and its verifier for tokens the API accepts; codes go only to
https addresses of this machine, are used once, and need the verifier their challenge was made from."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.adapters.tokens import TokenPolicy, TokenValidator
from shared.domain.principals import GROUP, USER, local_object_id
from shared.emulator.issuer import IssuerServer
from shared.emulator.login import is_local_host, resource_of
from shared.localstack.tls import TlsFiles
from tests.identity.helpers import TENANT, running_issuer

REDIRECT = "https://127.0.0.1:7443/dashboard/auth/callback"
SCOPE = "openid profile api://batchai/user_impersonation"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IssuerServer, TlsFiles]]:
    with running_issuer(tmp_path_factory.mktemp("login")) as running:
        yield running


@pytest.fixture()
def http(issuer: tuple[IssuerServer, TlsFiles]) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(issuer[1].ca_file)), timeout=10) as c:
        yield c


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize_params(challenge: str, **changes: str) -> dict[str, str]:
    return {"client_id": "batchai-dashboard", "redirect_uri": REDIRECT, "response_type": "code", "scope": SCOPE,
            "state": "s-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256", **changes}


def endpoints(http: httpx.Client, server: IssuerServer) -> dict[str, str]:
    return http.get(f"{server.issuer.url}/.well-known/openid-configuration").json()


def sign_in(http: httpx.Client, server: IssuerServer, challenge: str, principal: str, groups: str = "") -> str:
    """The code the issuer redirects back with, after the page is filled in as a person would."""
    authorize = endpoints(http, server)["authorization_endpoint"]
    page = http.get(authorize, params=authorize_params(challenge))
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    form = {k: v.replace("&amp;", "&") for k, v in hidden.items()}
    answer = http.post(authorize, data={**form, "principal": principal, "groups": groups})
    assert answer.status_code == 302, answer.text
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    query = parse_qs(target.query)
    assert query["state"] == ["s-1"]
    return query["code"][0]


def exchange(http: httpx.Client, server: IssuerServer, code: str, verifier: str, **changes: str) -> httpx.Response:
    return http.post(endpoints(http, server)["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "batchai-dashboard",
        "code_verifier": verifier, **changes})


def test_a_person_signs_in_and_the_tokens_name_them(issuer: tuple[IssuerServer, TlsFiles], http: httpx.Client
                                                    ) -> None:
    server, tls = issuer
    verifier, challenge = pkce()
    code = sign_in(http, server, challenge, "ada", "ml-team, ops")
    reply = exchange(http, server, code, verifier)
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    tokens = reply.json()
    access = TokenValidator(TokenPolicy(server.issuer.url, frozenset({"api://batchai"}), str(tls.ca_file))
                            ).validate(tokens["access_token"])
    oid = local_object_id(TENANT, USER, "ada")
    assert (access["oid"], access["preferred_username"], access["scp"]) == (oid, "ada", "user_impersonation")
    assert access["groups"] == [local_object_id(TENANT, GROUP, "ml-team"), local_object_id(TENANT, GROUP, "ops")]
    identity = TokenValidator(TokenPolicy(server.issuer.url, frozenset({"batchai-dashboard"}), str(tls.ca_file))
                              ).validate(tokens["id_token"])
    assert (identity["oid"], identity["nonce"]) == (oid, "n-1")


def test_a_code_is_used_once_and_only_with_its_verifier(issuer: tuple[IssuerServer, TlsFiles],
                                                        http: httpx.Client) -> None:
    server, _ = issuer
    verifier, challenge = pkce()
    code = sign_in(http, server, challenge, "bob")
    wrong = exchange(http, server, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(http, server, code, verifier).json()["error"] == "invalid_grant"  # spent by the failed try
    code = sign_in(http, server, challenge, "bob")
    assert exchange(http, server, code, verifier, redirect_uri=REDIRECT + "x").json()["error"] == "invalid_grant"
    code = sign_in(http, server, challenge, "bob")
    assert exchange(http, server, code, verifier, grant_type="password").json()["error"] == "unsupported_grant_type"
    code = sign_in(http, server, challenge, "bob")
    assert exchange(http, server, code, verifier).status_code == 200
    assert exchange(http, server, code, verifier).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("changes", [
    {"redirect_uri": "https://example.com/cb"}, {"redirect_uri": "http://127.0.0.1:7443/cb"},
    {"redirect_uri": "https://10.255.255.1/cb"}, {"client_id": ""}, {"code_challenge": ""},
    {"code_challenge_method": "plain"}, {"response_type": "token"}, {"scope": "profile"},
])
def test_bad_authorization_requests_get_an_error_page_and_no_redirect(issuer: tuple[IssuerServer, TlsFiles],
                                                                      http: httpx.Client, changes: dict) -> None:
    server, _ = issuer
    authorize = endpoints(http, server)["authorization_endpoint"]
    params = authorize_params(pkce()[1], **changes)
    for reply in (http.get(authorize, params=params), http.post(authorize, data={**params, "principal": "eve"})):
        assert reply.status_code == 400 and "location" not in reply.headers


def test_a_principal_that_is_not_a_name_is_asked_again(issuer: tuple[IssuerServer, TlsFiles],
                                                       http: httpx.Client) -> None:
    server, _ = issuer
    authorize = endpoints(http, server)["authorization_endpoint"]
    reply = http.post(authorize, data={**authorize_params(pkce()[1]), "principal": "<script>", "groups": "x"})
    assert reply.status_code == 400 and "location" not in reply.headers
    assert 'role="alert"' in reply.text and "<script>" not in reply.text and 'id="principal"' in reply.text


def test_only_this_machines_addresses_are_local() -> None:
    assert is_local_host("127.0.0.1") and is_local_host("localhost") and is_local_host("::1")
    assert not is_local_host("example.com") and not is_local_host("8.8.8.8")


def test_the_scope_names_the_resource() -> None:
    assert resource_of("openid api://batchai/user_impersonation") == ("api://batchai", "user_impersonation")
    assert resource_of("openid https://x.example/.default profile") == ("https://x.example", "")
    assert resource_of("openid profile") == ("", "")


def test_discovery_names_the_endpoints_it_serves(issuer: tuple[IssuerServer, TlsFiles], http: httpx.Client) -> None:
    server, _ = issuer
    document = endpoints(http, server)
    assert document["authorization_endpoint"] == f"{server.url}/{TENANT}/oauth2/v2.0/authorize"
    assert "S256" in document["code_challenge_methods_supported"]
    assert http.post(document["token_endpoint"], data={}).json()["error"] == "unsupported_grant_type"
