"""Dashboard sessions (table `dashboardsessions`, owned here) and sign-ins in progress (a cookie).

A session is a random id that only the browser holds, in an HttpOnly, Secure, SameSite=Lax cookie
(`__Host-` prefixed: set by this host only, for every path); the table keeps its SHA-256, the user's
access token (sealed at rest with the service's secrets key), a CSRF token and when it ends (the access
token's expiry: the dashboard never holds a credential longer than the identity provider gave it).
Every change the dashboard makes must carry the CSRF token (`check_csrf`).

A sign-in in progress (LOGIN_LIFETIME_S) is kept by the browser that started it, in a second cookie:
its OAuth state, PKCE verifier, nonce and the page to return to, encrypted and authenticated (AES-GCM,
a key derived from the service's secrets key), so nobody can finish a sign-in in another browser and
starting one writes nothing on the service. Rows are written only for people the issuer signed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.adapters import secret_box, storage
from shared.config import Settings

T_SESSIONS = "dashboardsessions"
SESSION_COOKIE = "__Host-batchai-session"
LOGIN_COOKIE = "__Host-batchai-login"
CSRF_HEADER = "x-csrf-token"
LOGIN_LIFETIME_S = 600
SESSION = "session"


@dataclass(frozen=True)
class Session:
    token: str  # the user's access token for the API
    csrf: str
    name: str
    expires: datetime


@dataclass(frozen=True)
class PendingLogin:
    verifier: str
    nonce: str
    next_path: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cookie_options(max_age: int) -> dict[str, Any]:
    return {"max_age": max_age, "path": "/", "secure": True, "httponly": True, "samesite": "lax"}


def create(settings: Settings, token: str, name: str, expires_at: float, now: datetime) -> tuple[str, Session]:
    """A new session for a signed-in user: (the id for the cookie, the session)."""
    _sweep(settings, now)
    session_id = secrets.token_urlsafe(32)
    session = Session(token, secrets.token_urlsafe(32), name, datetime.fromtimestamp(expires_at, UTC))
    _table(settings).create_entity({
        "PartitionKey": SESSION, "RowKey": _hash(session_id), "token": secret_box.secret_box(settings).seal(token),
        "csrf": session.csrf, "name": name, "expires": session.expires.isoformat()})
    return session_id, session


def load(settings: Settings, session_id: str | None, now: datetime) -> Session | None:
    """The live session a cookie names, or None (none, unknown, or ended)."""
    if not session_id:
        return None
    row = _get(settings, SESSION, _hash(session_id))
    if row is None:
        return None
    session = Session(secret_box.secret_box(settings).open(str(row["token"])), str(row["csrf"]), str(row["name"]),
                      datetime.fromisoformat(str(row["expires"])))
    return session if session.expires > now else None


def end(settings: Settings, session_id: str | None) -> None:
    if session_id:
        _delete(settings, SESSION, _hash(session_id))


def check_csrf(session: Session, presented: str | None) -> bool:
    return bool(presented) and secrets.compare_digest(session.csrf, str(presented))


def begin_login(settings: Settings, state: str, verifier: str, nonce: str, next_path: str, now: datetime) -> str:
    """The login cookie's value: the sign-in in progress, encrypted and authenticated with a key of its own."""
    payload = json.dumps({"state": state, "verifier": verifier, "nonce": nonce, "next": next_path,
                          "expires": (now + timedelta(seconds=LOGIN_LIFETIME_S)).timestamp()})
    nonce_bytes = os.urandom(12)
    sealed = AESGCM(_login_key(settings.secrets_key)).encrypt(nonce_bytes, payload.encode(), LOGIN_COOKIE.encode())
    return base64.urlsafe_b64encode(nonce_bytes + sealed).decode().rstrip("=")


def take_login(settings: Settings, state: str, cookie: str | None, now: datetime) -> PendingLogin | None:
    """The sign-in the browser's login cookie holds, when it is the one the OAuth state names and not stale."""
    if not cookie or not state:
        return None
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        found = json.loads(AESGCM(_login_key(settings.secrets_key)).decrypt(raw[:12], raw[12:],
                                                                             LOGIN_COOKIE.encode()))
    except (InvalidTag, ValueError):
        return None
    if not secrets.compare_digest(str(found["state"]), state) or float(found["expires"]) <= now.timestamp():
        return None
    return PendingLogin(str(found["verifier"]), str(found["nonce"]), str(found["next"]))


@lru_cache(maxsize=4)
def _login_key(secrets_key: str) -> bytes:
    """The login cookies' key, derived from the service's secrets key (never used as is for anything else)."""
    if not secrets_key:
        raise secret_box.SecretBoxError("BATCHAI_SECRETS_KEY is not set: sign-ins cannot be protected without it")
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"batchai dashboard sign-in cookie").derive(
        base64.b64decode(secrets_key))


def _sweep(settings: Settings, now: datetime) -> None:
    """Forget ended sessions (at each sign-in: the table holds only sessions that may still be used)."""
    client = _table(settings)
    for row in client.query_entities("expires lt @now", parameters={"now": now.isoformat()},
                                     select=["PartitionKey", "RowKey"]):
        _delete(settings, row["PartitionKey"], row["RowKey"])


def _get(settings: Settings, pk: str, rk: str) -> Any:
    try:
        return _table(settings).get_entity(pk, rk)
    except ResourceNotFoundError:
        return None


def _delete(settings: Settings, pk: str, rk: str) -> None:
    _table(settings).delete_entity(pk, rk)  # idempotent: a missing entity is no error


def _table(settings: Settings) -> TableClient:
    conn = settings.storage_connection_string
    _created(conn)
    return storage.table(conn, T_SESSIONS)


@lru_cache(maxsize=16)
def _created(conn: str) -> None:
    """The table exists (made once per process and account: it is not among the tables the stack makes)."""
    storage.table_service(conn).create_table_if_not_exists(T_SESSIONS)
