"""Node tokens: the credential of a node that has no managed identity to prove itself with (a local
agent process, or a machine its owner brought to a bring-your-own cluster).

The provider that starts such a node mints a random token, hands it to the node (a 0600 file in
the node's working directory, never a queue message) and stores only its SHA-256 in table
`storage.T_NODE_TOKENS` (PartitionKey: cluster key, RowKey: node id). The node API accepts the
token as a bearer token for exactly that node of that cluster; revoking deletes the row. A machine
that joined with a join token (`shared.adapters.join_tokens`) gets a node token whose row names that
join token (`joinToken`): it holds only while the join token does; when the service removes such a
node, its row is kept, retired (`retiredAt`), so that its next request is told why it is refused. The
table is reached through the storage port (`shared.ports`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.ports.contract import Table
from shared.ports.rows import Delete, Merge, Query, StaleEtag, Upsert

PREFIX = "bainode1."  # tells a node token from a JWT at a glance


def mint() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def is_node_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _table(conn: str) -> Table:
    return ports.of(conn).table(storage.T_NODE_TOKENS)


def store(conn: str, cluster_key: str, node_id: str, token: str, join_token: str = "") -> None:
    fields = {"sha256": _digest(token), "createdAt": datetime.now(UTC).isoformat()}
    if join_token:
        fields["joinToken"] = join_token
    _table(conn).write(Upsert(cluster_key, node_id, fields))


def lookup(conn: str, cluster_key: str, node_id: str, token: str) -> dict[str, Any] | None:
    """The row of node `node_id` of `cluster_key` when `token` is its token (constant-time comparison)."""
    row = _table(conn).get(cluster_key, node_id)
    if row is None:
        return None
    return dict(row) if hmac.compare_digest(str(row.get("sha256") or ""), _digest(token)) else None


def matches(conn: str, cluster_key: str, node_id: str, token: str) -> bool:
    """Is `token` the token of node `node_id` of `cluster_key`?"""
    return lookup(conn, cluster_key, node_id, token) is not None


def joined(conn: str, cluster_key: str) -> list[dict[str, Any]]:
    """The rows of the cluster's nodes that joined with a join token."""
    return [dict(r) for r in _table(conn).query(Query(pk=cluster_key)) if r.get("joinToken")]


def retire(conn: str, cluster_key: str, node_id: str) -> None:
    """The node was removed: its token proves it no more (the row stays, saying so; none: a no-op)."""
    with contextlib.suppress(StaleEtag):
        _table(conn).write(Merge(cluster_key, node_id, {"retiredAt": datetime.now(UTC).isoformat()}, None))


def revoke(conn: str, cluster_key: str, node_id: str) -> None:
    _table(conn).write(Delete(cluster_key, node_id))  # none: a no-op
