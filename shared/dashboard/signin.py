"""Signing people in to the dashboard: OpenID Connect authorization code flow with PKCE (S256) against the
issuer the API trusts (`Settings.token_issuer`: Entra ID in Azure, the local stack's issuer locally).

`start` makes the authorization URL with a fresh state, nonce and code verifier; `finish` exchanges the
code (with its verifier, and the client secret when one is configured: Entra ID's web apps need one),
checks the id_token (issuer, audience = the dashboard's client id, signature, nonce) and returns the
access token for the API's audience, which `authorization.authenticate` turns into the principal, as for
any API call: the dashboard acts with exactly the roles its user has.

Settings (BATCHAI_DASHBOARD_*): CLIENT_ID (the app registration; locally "batchai-dashboard"),
CLIENT_SECRET (optional), SCOPE (default: ``openid profile <first API audience>/user_impersonation``),
URL (the dashboard's public https URL, when the request's own is not what the issuer redirects to).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from shared.adapters import tokens
from shared.config import Settings
from shared.domain.errors import ApiError
from shared.domain.principals import Principal
from shared.services import authorization

DISCOVERY_TTL_S = 3600.0
HTTP_TIMEOUT_S = 15.0


class SignInFailed(Exception):
    """The sign-in could not finish; str() says why (never a token)."""


@dataclass(frozen=True)
class DashboardSettings:
    client_id: str = "batchai-dashboard"
    client_secret: str = ""
    scope: str = ""
    public_url: str = ""

    @classmethod
    def from_env(cls) -> DashboardSettings:
        env = os.environ
        return cls(client_id=env.get("BATCHAI_DASHBOARD_CLIENT_ID", "batchai-dashboard"),
                   client_secret=env.get("BATCHAI_DASHBOARD_CLIENT_SECRET", ""),
                   scope=env.get("BATCHAI_DASHBOARD_SCOPE", ""),
                   public_url=env.get("BATCHAI_DASHBOARD_URL", "").rstrip("/"))

    def scopes(self, settings: Settings) -> str:
        if self.scope:
            return self.scope
        api = next((a for a in settings.api_audiences if "://" in a), settings.api_audiences[0]
                   if settings.api_audiences else "")
        return f"openid profile {api}/user_impersonation" if api else "openid profile"


@dataclass(frozen=True)
class Started:
    url: str  # where the browser goes to sign in
    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class SignedIn:
    access_token: str
    principal: Principal
    expires_at: float  # the access token's exp


_discovery: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
_discovery_lock = threading.Lock()


def _verify(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.token_issuer_ca_file or None)


def discovery(settings: Settings) -> dict[str, Any]:
    """The issuer's OpenID discovery document (cached for an hour)."""
    key = (settings.token_issuer, settings.token_issuer_ca_file)
    with _discovery_lock:
        cached = _discovery.get(key)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
    url = settings.token_issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        document = httpx.get(url, verify=_verify(settings), timeout=HTTP_TIMEOUT_S).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as error:
        raise SignInFailed(f"the identity provider's discovery document could not be read: {error}") from error
    if document.get("issuer") != settings.token_issuer:
        raise SignInFailed("the identity provider's discovery document names another issuer")
    with _discovery_lock:
        _discovery[key] = (time.monotonic(), document)
    return document


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def start(settings: Settings, dash: DashboardSettings, redirect_uri: str) -> Started:
    if not settings.token_issuer:
        raise SignInFailed("the service trusts no identity provider (BATCHAI_TOKEN_ISSUER is not set)")
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = urlencode({"client_id": dash.client_id, "response_type": "code", "redirect_uri": redirect_uri,
                       "response_mode": "query", "scope": dash.scopes(settings), "state": state, "nonce": nonce,
                       "code_challenge": _challenge(verifier), "code_challenge_method": "S256"})
    return Started(f"{discovery(settings)['authorization_endpoint']}?{query}", state, nonce, verifier)


def finish(settings: Settings, dash: DashboardSettings, redirect_uri: str, code: str, verifier: str,
           nonce: str) -> SignedIn:
    form = {"grant_type": "authorization_code", "client_id": dash.client_id, "code": code,
            "redirect_uri": redirect_uri, "code_verifier": verifier, "scope": dash.scopes(settings)}
    if dash.client_secret:
        form["client_secret"] = dash.client_secret
    try:
        reply = httpx.post(discovery(settings)["token_endpoint"], data=form, verify=_verify(settings),
                           timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as error:
        raise SignInFailed(f"the identity provider could not be reached: {error}") from error
    body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
    if reply.status_code != 200 or not body.get("access_token") or not body.get("id_token"):
        raise SignInFailed(f"the identity provider refused the sign-in: {body.get('error', reply.status_code)}: "
                           f"{str(body.get('error_description', ''))[:300]}")
    try:
        identity = tokens.validator(settings.token_issuer, [dash.client_id], settings.token_issuer_ca_file
                                    ).validate(body["id_token"])
    except (tokens.InvalidToken, tokens.IssuerUnreachable) as error:
        raise SignInFailed(f"the id_token was refused: {error}") from error
    if not secrets.compare_digest(str(identity.get("nonce", "")), nonce):
        raise SignInFailed("the id_token was refused: its nonce is not this sign-in's")
    try:
        principal = authorization.authenticate(settings, f"Bearer {body['access_token']}")
    except ApiError as error:
        raise SignInFailed(f"the access token was refused: {error.message}") from error
    expires = float(jwt.decode(body["access_token"], options={"verify_signature": False})["exp"])
    return SignedIn(body["access_token"], principal, expires)
