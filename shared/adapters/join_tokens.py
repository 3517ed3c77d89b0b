"""Join tokens: what lets a machine its owner runs join a bring-your-own cluster (`batchai node join`).

A token names its cluster and itself (``baijoin1.<base64url of {"c": cluster key, "n": name}>.<secret>``),
so the machine needs nothing else; the service keeps only its SHA-256 and its expiry in table
`storage.T_JOIN_TOKENS` (PartitionKey: cluster key, RowKey: token name). Revoking deletes the row. The
node credential a machine gets for a join token (`shared.adapters.node_tokens`, with the token's name in
`joinToken`) works while the token is valid: `valid` is asked on every request of that node. The table is
reached through the storage port (`shared.ports`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.ports.contract import Table
from shared.ports.rows import Delete, Insert, Query

PREFIX = "baijoin1."


@dataclass(frozen=True)
class JoinToken:
    cluster_key: str
    name: str
    expires_at: datetime
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "expiresAt": self.expires_at.isoformat(), "createdAt": self.created_at.isoformat()}


def mint(cluster_key: str, name: str) -> str:
    head = base64.urlsafe_b64encode(json.dumps({"c": cluster_key, "n": name}).encode()).decode().rstrip("=")
    return f"{PREFIX}{head}.{secrets.token_urlsafe(32)}"


def parse(token: str) -> tuple[str, str] | None:
    """(cluster key, token name) a token says it is for; None when it is not a join token."""
    if not token.startswith(PREFIX):
        return None
    head, sep, secret = token[len(PREFIX):].partition(".")
    if not sep or not secret:
        return None
    try:
        named = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(named, dict) or not isinstance(named.get("c"), str) or not isinstance(named.get("n"), str):
        return None
    return named["c"], named["n"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _table(conn: str) -> Table:
    return ports.of(conn).table(storage.T_JOIN_TOKENS)


def _of(row: Mapping[str, Any]) -> JoinToken:
    return JoinToken(row["PartitionKey"], row["RowKey"], datetime.fromisoformat(row["expiresAt"]),
                     datetime.fromisoformat(row["createdAt"]))


def store(conn: str, cluster_key: str, name: str, token: str, expires_at: datetime, now: datetime) -> None:
    """Record a new token; StaleEtag when the name is taken."""
    _table(conn).write(Insert(cluster_key, name, {"sha256": _digest(token), "expiresAt": expires_at.isoformat(),
                                                  "createdAt": now.isoformat()}))


def get(conn: str, cluster_key: str, name: str) -> JoinToken | None:
    row = _table(conn).get(cluster_key, name)
    return None if row is None else _of(row)


def check(conn: str, token: str, now: datetime) -> JoinToken | str:
    """The token's record when it is a known, unexpired join token; else why not."""
    named = parse(token)
    if named is None:
        return "not a join token"
    row = _table(conn).get(*named)
    if row is None or not hmac.compare_digest(str(row.get("sha256") or ""), _digest(token)):
        return "the join token is unknown or was revoked"
    found = _of(row)
    return found if now < found.expires_at else "the join token has expired"


def valid(conn: str, cluster_key: str, name: str, now: datetime) -> str | None:
    """None while the named token holds; else why it does not (revoked, expired)."""
    found = get(conn, cluster_key, name)
    if found is None:
        return f"join token '{name}' was revoked"
    if now >= found.expires_at:
        return f"join token '{name}' expired at {found.expires_at.isoformat()}"
    return None


def list_tokens(conn: str, cluster_key: str) -> list[JoinToken]:
    return sorted((_of(r) for r in _table(conn).query(Query(pk=cluster_key))), key=lambda t: t.name)


def revoke(conn: str, cluster_key: str, name: str) -> bool:
    """Delete the token; False when there was none."""
    if get(conn, cluster_key, name) is None:
        return False
    _table(conn).write(Delete(cluster_key, name))  # gone meanwhile: no error
    return True
