"""The local cloud's Key Vault: the secrets part of Key Vault's REST API, over https, for one vault.

- ``GET /secrets/{name}[/{version}]?api-version=7.4`` -> ``{"value", "id", "attributes"}`` (the
  latest version without one), 404 ``SecretNotFound``;
- ``PUT /secrets/{name}?api-version=7.4`` with ``{"value"}`` -> the new version's bundle (tools and
  tests store secrets with it, as ``az keyvault secret set`` does).

Every request needs a bearer token from the stack's issuer for Key Vault's audience
(`RESOURCE`, validated with `shared.adapters.tokens`), as Key Vault accepts Entra ID tokens; without
one the answer is 401 with Key Vault's ``WWW-Authenticate`` challenge. Any valid token may read and
write (a vault's access policies are not emulated); `reads` records which principal read what.
Secrets are kept in ``<directory>/secrets.json`` (0600).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.adapters import tokens
from shared.adapters.auth import bearer_token
from shared.emulator.serving import Endpoint
from shared.localstack.tls import TlsFiles

RESOURCE = "https://vault.azure.net"
STORE = "secrets.json"
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Read:
    name: str
    version: str
    principal: str  # the token's oid (else sub)


@dataclass(frozen=True)
class Reply:
    status: int
    document: dict[str, Any]
    headers: dict[str, str]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, headers or {})


class KeyVault:
    def __init__(self, directory: Path, tls: TlsFiles, issuer: str, issuer_ca_file: str = "",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.tls = tls
        self.issuer = issuer
        self.issuer_ca_file = issuer_ca_file
        self.host = host
        self.port = port
        self.reads: list[Read] = []
        self._lock = threading.Lock()
        self._endpoint = Endpoint("keyvault")
        directory.mkdir(parents=True, exist_ok=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> KeyVault:
        owner = self

        class _Bound(_Handler):
            vault = owner

        self.port = self._endpoint.start(self.host, self.port, _Bound, self.tls)
        return self

    def stop(self) -> None:
        self._endpoint.stop()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def secret_url(self, name: str, version: str = "") -> str:
        return f"{self.url}/secrets/{name}" + (f"/{version}" if version else "")

    # -- secrets ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        path = self.directory / STORE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, store: dict[str, Any]) -> None:
        tmp = self.directory / f".{STORE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(store, f)
        os.replace(tmp, self.directory / STORE)

    def set_secret(self, name: str, value: str) -> str:
        """Store a new version of secret `name`; its version."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a secret name: {name!r}")
        version = uuid.uuid4().hex
        with self._lock:
            store = self._load()
            entry = store.setdefault(name.lower(), {"name": name, "versions": {}, "latest": ""})
            entry["versions"][version] = {"value": value, "created": int(time.time())}
            entry["latest"] = version
            self._save(store)
        return version

    def _bundle(self, name: str, version: str, record: dict[str, Any]) -> dict[str, Any]:
        return {"value": record["value"], "id": self.secret_url(name, version),
                "attributes": {"enabled": True, "created": record["created"], "updated": record["created"],
                               "recoveryLevel": "Recoverable+Purgeable"}}

    # -- requests --------------------------------------------------------------------------------
    def _challenge(self) -> dict[str, str]:
        authority = self.issuer.removesuffix("/").removesuffix("/v2.0")
        return {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{RESOURCE}"'}

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        token = bearer_token(headers.get("authorization"))
        if token is None:
            return _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", self._challenge())
        try:
            claims = tokens.validator(self.issuer, [RESOURCE], self.issuer_ca_file).validate(token)
        except tokens.InvalidToken as error:
            return _error(401, "Unauthorized", f"AKV10032: the token was refused: {error}.", self._challenge())
        except tokens.IssuerUnreachable:
            return _error(503, "ServiceUnavailable", "The token issuer cannot be reached.")
        if not query.get("api-version"):
            return _error(400, "BadParameter", "The request URI contains an invalid or missing api-version.")
        segments = parts.path.strip("/").split("/")
        if segments[0] != "secrets" or len(segments) not in (2, 3) or not _NAME.fullmatch(segments[1]) \
                or (len(segments) == 3 and not _VERSION.fullmatch(segments[2])):
            return _error(400, "BadParameter", f"The request URI {parts.path!r} names no secret.")
        name = segments[1]
        if method == "PUT" and len(segments) == 2:
            return self._put(name, body)
        if method != "GET":
            return _error(405, "MethodNotAllowed", f"{method} is not supported on {parts.path}.")
        return self._get(name, segments[2] if len(segments) == 3 else "", str(claims.get("oid") or claims["sub"]))

    def _put(self, name: str, body: bytes) -> Reply:
        try:
            value = json.loads(body).get("value")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str):
            return _error(400, "BadParameter", "The body must be {\"value\": \"...\"}.")
        version = self.set_secret(name, value)
        with self._lock:
            record = self._load()[name.lower()]["versions"][version]
        return Reply(200, self._bundle(name, version, record), {})

    def _get(self, name: str, version: str, principal: str) -> Reply:
        with self._lock:
            entry = self._load().get(name.lower())
        version = version or (entry or {}).get("latest", "")
        record = (entry or {}).get("versions", {}).get(version)
        if entry is None or record is None:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name}"
                          f"{'/' + version if version else ''} was not found in this key vault.")
        with self._lock:
            self.reads.append(Read(entry["name"], version, principal))
        return Reply(200, self._bundle(entry["name"], version, record), {})


class _Handler(BaseHTTPRequestHandler):
    vault: KeyVault
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.vault.dispatch(self.command, self.path, headers, body)
        payload = json.dumps(reply.document).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = _handle
