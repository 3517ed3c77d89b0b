"""Bring-your-own nodes: the join tokens of a cluster (create, list, revoke) and the exchange of a join
token for a node credential (`join`), which is how a machine its owner runs becomes a node.

- `create` (``POST .../clusters/{name}/joinTokens``, body ``{"expiresInHours": h}``, default 24, at most
  720): the token is answered once and stored hashed (`shared.adapters.join_tokens`); only a cluster
  whose `nodeSource` is bringYourOwn takes tokens (409 otherwise).
- `revoke` (``DELETE .../joinTokens/{tokenName}``) deletes it: the node credentials it was exchanged for
  stop working at once (`node_credentials.authenticate` answers 401), the provider reports those nodes
  failed, and the reconciler handles them as lost nodes (jobs requeued, rows dropped).
- `join` (``POST /nodeagent/join``, the join token as bearer token, body ``{"name": N}``): a node id of
  the cluster for that name (`node_id_for`), and a node token for it, tied to the join token. Joining
  again under the same name replaces the node's credential.
- `node_state` (``POST /nodeagent/node``): a node's own row state, for `batchai node join` to wait for
  its registration.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import auth, join_tokens, message_signing, node_tokens
from shared.config import Settings
from shared.domain.errors import ApiError, bad_request, conflict, not_found
from shared.domain.keys import ClusterRef
from shared.domain.placement_options import BRING_YOUR_OWN
from shared.ports.rows import StaleEtag
from shared.services import nodes
from shared.services.node_credentials import authenticate

DEFAULT_HOURS = 24.0
MAX_HOURS = 720.0
MAX_NAME = 40  # of the name part of a node id: `node-<id>` stays within a queue name's 63 characters
_NAME = re.compile(r"[^a-z0-9]+")


def _byo_cluster(settings: Settings, ref: ClusterRef) -> None:
    doc = nodes.load_cluster(settings, ref.key)
    if doc is None or (doc.data.get("internal") or {}).get("deletingSince"):
        raise not_found("cluster", ref.name)
    if (doc.data.get("properties") or {}).get("nodeSource") != BRING_YOUR_OWN:
        raise conflict(f"Cluster '{ref.name}' runs the provider's nodes; join tokens are for clusters whose "
                       f"nodeSource is {BRING_YOUR_OWN}.", code="NotBringYourOwn")


def _hours(body: Any) -> float:
    if body is None:
        return DEFAULT_HOURS
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    hours = body.get("expiresInHours", DEFAULT_HOURS)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_HOURS:
        raise bad_request(f"'expiresInHours' must be a number of hours above 0 and at most {MAX_HOURS:g}.",
                          "expiresInHours")
    return float(hours)


def create(settings: Settings, ref: ClusterRef, body: Any, now: datetime) -> dict[str, Any]:
    hours = _hours(body)
    _byo_cluster(settings, ref)
    conn = settings.storage_connection_string
    expires = now + timedelta(hours=hours)
    for _ in range(3):
        name = f"jt-{secrets.token_hex(4)}"
        token = join_tokens.mint(ref.key, name)
        try:
            join_tokens.store(conn, ref.key, name, token, expires, now)
        except StaleEtag:
            continue  # the name is taken: draw another
        return {"name": name, "token": token, "expiresAt": expires.isoformat()}
    raise RuntimeError("no free join token name after 3 draws")  # transient: the caller retries


def list_tokens(settings: Settings, ref: ClusterRef) -> list[dict[str, Any]]:
    if nodes.load_cluster(settings, ref.key) is None:
        raise not_found("cluster", ref.name)
    return [t.view() for t in join_tokens.list_tokens(settings.storage_connection_string, ref.key)]


def revoke(settings: Settings, ref: ClusterRef, name: str) -> bool:
    """Revoke the token; False when there was none (a repeated revoke)."""
    return join_tokens.revoke(settings.storage_connection_string, ref.key, name)


def node_id_for(cluster_key: str, name: str) -> str:
    """The node id of a machine named `name` in a cluster: queue-name safe and unique across clusters."""
    slug = _NAME.sub("-", name.lower()).strip("-")[:MAX_NAME].strip("-") or "node"
    return f"byo{hashlib.sha256(cluster_key.encode()).hexdigest()[:8]}-{slug}"


def join(settings: Settings, authorization: str | None, body: Any, now: datetime) -> dict[str, Any]:
    token = auth.bearer_token(authorization)
    if token is None:
        raise ApiError(401, "AuthenticationFailed", "A join token is required as the bearer token.")
    conn = settings.storage_connection_string
    found = join_tokens.check(conn, token, now)
    if isinstance(found, str):
        raise ApiError(401, "InvalidAuthenticationToken", f"The join token was refused: {found}.")
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("'name' must be a non-empty string (the machine's name).", "name")
    doc = nodes.load_cluster(settings, found.cluster_key)
    if doc is None or (doc.data.get("properties") or {}).get("nodeSource") != BRING_YOUR_OWN:
        raise ApiError(401, "InvalidAuthenticationToken", "The join token's cluster is gone.")
    node_id = node_id_for(found.cluster_key, body["name"])
    node_token = node_tokens.mint()
    node_tokens.store(conn, found.cluster_key, node_id, node_token, join_token=found.name)
    return {"clusterKey": found.cluster_key, "nodeId": node_id, "nodeToken": node_token,
            "expiresAt": found.expires_at.isoformat(),
            "storageEndpoints": dict(settings.azure.node_storage_endpoints),
            "messageKey": signer.public_key if (signer := message_signing.signer(settings)) else ""}


def node_state(settings: Settings, authorization: str | None, body: Any) -> dict[str, Any]:
    node = authenticate(settings, authorization, body)
    row = nodes.get_node(settings, node.cluster_key, node.node_id)
    return {"state": str(row["state"]) if row else ""}
