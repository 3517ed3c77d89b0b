"""The local issuer's interactive sign-in: OpenID Connect authorization code flow with PKCE (S256), as Entra
ID's v2.0 `authorize` and `token` endpoints answer it, for the dashboard and any other local client.

`GET /{tenant}/oauth2/v2.0/authorize` shows a sign-in page where a person picks a principal name and
groups, the names `batchai stack token` takes (object ids come from `principals.local_object_id`, so
role assignments made for those names apply). Submitting it redirects to the client's `redirect_uri`
with a one-time code (valid CODE_LIFETIME_S); `POST /{tenant}/oauth2/v2.0/token` exchanges the code and
its PKCE verifier for an id_token (audience: the client) and an access_token for the resource the scope
names (``api://batchai/user_impersonation`` -> audience ``api://batchai``), both signed by the issuer.

There are no passwords: the stand-in trusts whoever reaches the page, as the stack trusts whoever can
read its key. Codes go only to https redirect URIs on this machine's own addresses, never elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psutil

from shared.domain.principals import GROUP, USER, local_object_id

CODE_LIFETIME_S = 600
TOKEN_LIFETIME_S = 3600
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 section 4.1
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


class LoginError(Exception):
    """An OAuth error: `error` (RFC 6749 section 5.2 / 4.1.2.1) and a description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    nonce: str
    code_challenge: str

    @classmethod
    def parse(cls, params: Mapping[str, str], local_host: Callable[[str], bool]) -> AuthorizationRequest:
        """The request, or LoginError. A bad client or redirect URI is never redirected to (invalid_request)."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        if not client_id:
            raise LoginError("invalid_request", "client_id is required")
        target = urlsplit(redirect_uri)
        if target.scheme != "https" or not target.hostname or not local_host(target.hostname) or target.fragment:
            raise LoginError("invalid_request", "redirect_uri must be an https URL on this machine's own addresses")
        if params.get("response_type") != "code":
            raise LoginError("unsupported_response_type", "response_type must be 'code'")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise LoginError("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
        if "openid" not in params.get("scope", "").split():
            raise LoginError("invalid_scope", "the scope must include 'openid'")
        return cls(client_id, redirect_uri, params["scope"], params.get("state", ""), params.get("nonce", ""),
                   params["code_challenge"])

    def fields(self) -> dict[str, str]:
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "scope": self.scope,
                "state": self.state, "nonce": self.nonce, "code_challenge": self.code_challenge,
                "code_challenge_method": "S256", "response_type": "code"}

    def redirect(self, **params: str) -> str:
        query = urlencode({**params, **({"state": self.state} if self.state else {})})
        return f"{self.redirect_uri}{'&' if urlsplit(self.redirect_uri).query else '?'}{query}"


@dataclass(frozen=True)
class Grant:
    request: AuthorizationRequest
    principal: str
    groups: tuple[str, ...]
    expires: float


def is_local_host(host: str) -> bool:
    """Whether `host` names this machine: localhost, a loopback address or an address of one of its interfaces."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(a.address.split("%")[0] == str(address) for addrs in psutil.net_if_addrs().values() for a in addrs)


def names(text: str) -> tuple[str, ...]:
    """Group names from a comma- or space-separated list; LoginError for one that is not a name."""
    found = tuple(n for n in re.split(r"[,\s]+", text.strip()) if n)
    for name in found:
        if not _NAME.fullmatch(name):
            raise LoginError("invalid_request", f"'{name[:64]}' is not a name (letters, digits and _ . @ -)")
    return found


def resource_of(scope: str) -> tuple[str, str]:
    """(audience, scp) of the resource a scope names: ``api://batchai/user_impersonation`` ->
    (``api://batchai``, ``user_impersonation``); ("", "") when it names only OpenID scopes."""
    for item in scope.split():
        if item not in OIDC_SCOPES and "/" in item:
            audience, _, permission = item.rpartition("/")
            return audience, "" if permission == ".default" else permission
    return "", ""


class Login:
    """The sign-in page, the codes it hands out (in memory, one use each) and their exchange for tokens."""

    def __init__(self, sign: Callable[[dict[str, Any], int], str], tenant_id: str,
                 local_host: Callable[[str], bool] = is_local_host, clock: Callable[[], float] = time.time) -> None:
        self.sign = sign
        self.tenant_id = tenant_id
        self.local_host = local_host
        self.clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}

    def page(self, query: Mapping[str, str], error: str = "") -> str:
        """The sign-in form for an authorization request (LoginError when the request is not one)."""
        request = AuthorizationRequest.parse(query, self.local_host)
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in request.fields().items())
        notice = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return _PAGE.format(client=html.escape(request.client_id), hidden=hidden, notice=notice,
                            principal=html.escape(query.get("principal", "")),
                            groups=html.escape(query.get("groups", "")))

    def submit(self, form: Mapping[str, str]) -> str:
        """The redirect (with a code) for a submitted sign-in form."""
        request = AuthorizationRequest.parse(form, self.local_host)
        principal = form.get("principal", "").strip()
        if not _NAME.fullmatch(principal):
            raise LoginError("invalid_request", "the principal must be a name: letters, digits and _ . @ -")
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._grants = {c: g for c, g in self._grants.items() if g.expires > now}
            self._grants[code] = Grant(request, principal, names(form.get("groups", "")), now + CODE_LIFETIME_S)
        return request.redirect(code=code)

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """The token response for an authorization_code grant (LoginError: invalid_grant and friends)."""
        if form.get("grant_type") != "authorization_code":
            raise LoginError("unsupported_grant_type", "grant_type must be 'authorization_code'")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.expires <= self.clock():
            raise LoginError("invalid_grant", "the code is unknown, used or expired")
        request = grant.request
        if (form.get("client_id"), form.get("redirect_uri")) != (request.client_id, request.redirect_uri):
            raise LoginError("invalid_grant", "client_id and redirect_uri must be those of the authorization request")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not _VERIFIER.fullmatch(verifier) or not secrets.compare_digest(challenge, request.code_challenge):
            raise LoginError("invalid_grant", "the code_verifier does not match the code_challenge")
        return self._tokens(grant)

    def _tokens(self, grant: Grant) -> dict[str, Any]:
        oid = local_object_id(self.tenant_id, USER, grant.principal)
        groups = [local_object_id(self.tenant_id, GROUP, g) for g in grant.groups]
        person = {"sub": oid, "oid": oid, "name": grant.principal, "preferred_username": grant.principal,
                  "groups": groups, "ver": "2.0"}
        id_claims = {**person, "aud": grant.request.client_id, **({"nonce": grant.request.nonce}
                                                                 if grant.request.nonce else {})}
        audience, permission = resource_of(grant.request.scope)
        access_claims = {**person, "aud": audience or grant.request.client_id, "idtyp": "user",
                         "azp": grant.request.client_id, "scp": permission or "openid"}
        return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "scope": grant.request.scope,
                "access_token": self.sign(access_claims, TOKEN_LIFETIME_S),
                "id_token": self.sign(id_claims, TOKEN_LIFETIME_S)}


def form_of(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: batchai local stack</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px system-ui, sans-serif; background: #f3f4f6; margin: 0; }}
main {{ max-width: 26rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: 8px;
       box-shadow: 0 1px 4px #0002; }}
label {{ display: block; margin: 1rem 0 .3rem; font-weight: 600; }}
input[type=text] {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }}
button {{ margin-top: 1.5rem; padding: .55rem 1.4rem; font: inherit; background: #2563eb; color: #fff;
          border: 0; border-radius: 4px; cursor: pointer; }}
.hint {{ color: #555; font-size: 13px; }} .error {{ color: #b91c1c; }}
</style></head>
<body><main>
<h1>Sign in</h1>
<p class="hint">The local stack's identity provider, for <strong>{client}</strong>. Pick who you are: the names
<code>batchai stack token --principal NAME --group GROUP</code> and
<code>batchai role assignment create --assignee NAME</code> use.</p>
{notice}
<form method="post">
{hidden}
<label for="principal">Principal</label>
<input type="text" id="principal" name="principal" value="{principal}" required autofocus autocomplete="username">
<label for="groups">Groups <span class="hint">(comma-separated, optional)</span></label>
<input type="text" id="groups" name="groups" value="{groups}">
<button type="submit" id="sign-in">Sign in</button>
</form>
</main></body></html>
"""
