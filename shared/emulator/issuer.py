"""The local stack's stand-in for Microsoft Entra ID: one signing key, its OpenID discovery document and JWKS.

`Issuer` owns the key (RSA-2048, persisted 0600 under its directory, created once: concurrent first
callers agree on one key) and signs RS256 tokens whose header `kid` is the key's RFC 7638 thumbprint.
`IssuerServer` serves the discovery document and the keys over https, at the paths Entra ID uses:
issuer `https://HOST:PORT/{tenant}/v2.0`, discovery `{issuer}/.well-known/openid-configuration`,
keys `https://HOST:PORT/{tenant}/discovery/v2.0/keys`, and the interactive sign-in the discovery document
names: `/{tenant}/oauth2/v2.0/authorize` (a page where a person picks a principal) and `.../token`
(authorization code with PKCE; `shared.emulator.login`). Routes added with `IssuerServer.route` come first.

The issuer URL contains the server's port. Started on port 0, the server fixes the issuer's URL
when it starts (an issuer loaded with url="" gets it then); with a fixed port the caller can pass
the URL up front.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.emulator.login import PAGE_HEADERS, Login, LoginError, form_of
from shared.emulator.serving import Endpoint
from shared.localstack.tls import TlsFiles

KEY_FILE = "issuer-key.pem"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA key: the required members, sorted, no whitespace."""
    numbers = public_key.public_numbers()
    canonical = json.dumps({"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".issuer-key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            # link() refuses to replace: the first caller's key wins and every caller loads it below.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


class Issuer:
    """The stack's token issuer: signs with one persisted key; publishes discovery and keys documents."""

    def __init__(self, key: rsa.RSAPrivateKey, url: str, tenant_id: str) -> None:
        self.key = key
        self.url = url
        self.tenant_id = tenant_id
        self.kid = thumbprint(key.public_key())

    @classmethod
    def load_or_create(cls, directory: Path, url: str, tenant_id: str) -> Issuer:
        directory.mkdir(parents=True, exist_ok=True)
        return cls(_load_or_create_key(directory / KEY_FILE), url, tenant_id)

    def sign(self, claims: Mapping[str, Any], lifetime_s: int = 3600, now: float | None = None) -> str:
        """An RS256 JWT of `claims`; iss, iat, nbf, exp and tid are added unless given."""
        if not self.url:
            raise RuntimeError("the issuer's URL is not known yet (start its IssuerServer first)")
        issued = int(time.time() if now is None else now)
        payload = {"iss": self.url, "iat": issued, "nbf": issued, "exp": issued + lifetime_s,
                   "tid": self.tenant_id, **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def _tenant_root(self) -> str:
        return self.url.removesuffix("/").removesuffix("/v2.0")

    def discovery(self) -> dict[str, Any]:
        root = self._tenant_root()
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "tid", "oid", "name",
                                 "preferred_username", "email", "appid", "xms_mirid", "nonce", "groups"],
        }

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                          "n": public["n"], "e": public["e"]}]}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any) -> HttpReply:
        return cls(status, json.dumps(document).encode())


Handler = Callable[[HttpRequest], HttpReply]


class IssuerServer:
    """The issuer's https endpoint. `url` is the server's origin; the issuer identifier is `issuer.url`."""

    def __init__(self, issuer: Issuer, tls: TlsFiles, host: str = "127.0.0.1", port: int = 0) -> None:
        self.issuer = issuer
        self.tls = tls
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        self._routes: dict[tuple[str, str], Handler] = {}
        self.login = Login(lambda claims, lifetime: self.issuer.sign(claims, lifetime), issuer.tenant_id)
        self._endpoint = Endpoint("issuer")

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Serve `method` on `path` (exact) with `handler`, beside the discovery and keys documents."""
        self._routes[(method.upper(), path)] = handler

    def start(self) -> IssuerServer:
        owner = self

        class _Bound(_Handler):
            server_owner = owner

        self.port = self._endpoint.start(self.host, self.port, _Bound, self.tls)
        if not self.issuer.url:
            self.issuer.url = f"{self.url}/{self.issuer.tenant_id}/v2.0"
        return self

    def stop(self) -> None:
        self._endpoint.stop()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def requested(self, path: str) -> int:
        """How many requests asked for `path`."""
        with self.lock:
            return sum(1 for _, p in self.requests if p == path)

    def dispatch(self, request: HttpRequest) -> HttpReply:
        with self.lock:
            self.requests.append((request.method, request.path))
        document = self.issuer.discovery()
        builtin: dict[tuple[str, str], Handler] = {
            ("GET", urlsplit(self.issuer.url).path.rstrip("/") + "/.well-known/openid-configuration"):
                lambda _: HttpReply.json(200, self.issuer.discovery()),
            ("GET", urlsplit(document["jwks_uri"]).path): lambda _: HttpReply.json(200, self.issuer.jwks()),
            ("GET", urlsplit(document["authorization_endpoint"]).path): self._sign_in_page,
            ("POST", urlsplit(document["authorization_endpoint"]).path): self._sign_in,
            ("POST", urlsplit(document["token_endpoint"]).path): self._token,
        }
        handler = self._routes.get((request.method, request.path)) or builtin.get((request.method, request.path))
        if handler is None:
            return HttpReply.json(404, {"error": "not_found", "error_description": f"no route {request.path}"})
        return handler(request)


    def _sign_in_page(self, request: HttpRequest) -> HttpReply:
        try:
            return _html(200, self.login.page(request.query))
        except LoginError as error:
            return _error_page(error)

    def _sign_in(self, request: HttpRequest) -> HttpReply:
        form = form_of(request.body)
        try:
            return HttpReply(302, headers={"Location": self.login.submit(form), **PAGE_HEADERS})
        except LoginError as error:
            try:  # the request was sound, what the person typed was not: show the page again, saying why
                return _html(400, self.login.page(form, error.description))
            except LoginError:
                return _error_page(error)

    def _token(self, request: HttpRequest) -> HttpReply:
        try:
            tokens = self.login.token(form_of(request.body))
        except LoginError as error:
            return HttpReply.json(400, {"error": error.error, "error_description": error.description})
        return HttpReply(200, json.dumps(tokens).encode(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _error_page(error: LoginError) -> HttpReply:
    return _html(400, f"<!doctype html><title>Sign-in error</title><p>{html.escape(error.error)}: "
                      f"{html.escape(error.description)}</p>")


def _html(status: int, page: str) -> HttpReply:
    return HttpReply(status, page.encode(), "text/html; charset=utf-8", PAGE_HEADERS)


class _Handler(BaseHTTPRequestHandler):
    server_owner: IssuerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = HttpRequest(self.command, parts.path, dict(parse_qsl(parts.query)), dict(self.headers.items()), body)
        reply = self.server_owner.dispatch(request)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = _handle
