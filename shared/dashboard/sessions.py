"""Dashboard sessions and sign-ins in progress: table `dashboardsessions` (owned here).

A session is a random id that only the browser holds, in an HttpOnly, Secure, SameSite=Lax cookie
(`__Host-` prefixed: set by this host only, for every path); the table keeps its SHA-256, the user's
access token (sealed at rest with the service's secrets key), a CSRF token and when it ends (the access
token's expiry: the dashboard never holds a credential longer than the identity provider gave it).
Every change the dashboard makes must carry the CSRF token (`check_csrf`).

A sign-in in progress (``login`` rows, one use, LOGIN_LIFETIME_S) keeps the PKCE verifier (sealed), the
nonce and the page to return to, under the SHA-256 of its OAuth state; a second cookie binds it to the
browser that started it, so nobody can complete a sign-in in someone else's browser.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters import secret_box, storage
from shared.config import Settings

T_SESSIONS = "dashboardsessions"
SESSION_COOKIE = "__Host-batchai-session"
LOGIN_COOKIE = "__Host-batchai-login"
CSRF_HEADER = "x-csrf-token"
LOGIN_LIFETIME_S = 600
SESSION, LOGIN = "session", "login"


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
    """Remember a sign-in in progress; the value for the browser's login cookie."""
    binding = secrets.token_urlsafe(32)
    _table(settings).upsert_entity({
        "PartitionKey": LOGIN, "RowKey": _hash(state), "binding": _hash(binding), "nonce": nonce,
        "verifier": secret_box.secret_box(settings).seal(verifier), "next": next_path,
        "expires": (now + timedelta(seconds=LOGIN_LIFETIME_S)).isoformat()})
    return binding


def take_login(settings: Settings, state: str, binding: str | None, now: datetime) -> PendingLogin | None:
    """The sign-in the OAuth state names, when this browser started it and it is not stale; used up."""
    row = _get(settings, LOGIN, _hash(state)) if state else None
    if row is None:
        return None
    _delete(settings, LOGIN, _hash(state))
    if not binding or not secrets.compare_digest(str(row["binding"]), _hash(binding)):
        return None
    if datetime.fromisoformat(str(row["expires"])) <= now:
        return None
    return PendingLogin(secret_box.secret_box(settings).open(str(row["verifier"])), str(row["nonce"]),
                        str(row["next"]))


def _sweep(settings: Settings, now: datetime) -> None:
    """Forget ended sessions and stale sign-ins (at each sign-in: the table holds only what may still be used)."""
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
