"""Node tokens: the credential of a node that has no managed identity to prove itself with (a local
agent process; later a machine brought by its owner).

The provider that starts such a node mints a random token, hands it to the node (a 0600 file in
the node's working directory, never a queue message) and stores only its SHA-256 in table
`storage.T_NODE_TOKENS` (PartitionKey: cluster key, RowKey: node id). The node API accepts the
token as a bearer token for exactly that node of that cluster; revoking deletes the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import storage

PREFIX = "bainode1."  # tells a node token from a JWT at a glance


def mint() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def is_node_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def store(conn: str, cluster_key: str, node_id: str, token: str) -> None:
    storage.table(conn, storage.T_NODE_TOKENS).upsert_entity({
        "PartitionKey": cluster_key, "RowKey": node_id, "sha256": _digest(token),
        "createdAt": datetime.now(UTC).isoformat()})


def matches(conn: str, cluster_key: str, node_id: str, token: str) -> bool:
    """Is `token` the token of node `node_id` of `cluster_key`? (constant-time comparison)"""
    try:
        row = storage.table(conn, storage.T_NODE_TOKENS).get_entity(cluster_key, node_id)
    except ResourceNotFoundError:
        return False
    return hmac.compare_digest(str(row.get("sha256") or ""), _digest(token))


def revoke(conn: str, cluster_key: str, node_id: str) -> None:
    storage.table(conn, storage.T_NODE_TOKENS).delete_entity(cluster_key, node_id)
