"""Node credentials: who a caller of the node API is, and what a node may do with storage, as
short-lived SAS.

A node proves which node of which cluster it is in one of two ways (`authenticate`):
- a machine, with its IMDS token: issued by the configured issuer (`Settings.token_issuer`) for the
  node audience, by the system identity of the cluster's scale set (`xms_mirid`), for a node id
  under the cluster's computer name prefix. Nodes of one cluster are one trust domain (they share
  the cluster's ssh key), so the token proves "a node of this cluster", and the node id names which;
- a node without an identity of its own (a local agent process, a machine that joined a bring-your-own
  cluster), with its node token (`shared.adapters.node_tokens`): it proves exactly one node of one
  cluster; a joined machine's only while its join token holds (401 once revoked or expired).

Granted, for one hour (`LIFETIME`; the agent renews at half-life), and nothing else (no table, no
other queue, no container listing, no delete):
- `credentials`: read+process on queue ``node-<id>`` and add on ``node-<id>-poison`` (both created
  here when missing), create+write on the node's heartbeat blob, read on every blob of the
  wheelhouse; beside them the public key node messages are signed with and the vault hosts the node
  may send its Key Vault token to;
- `blobs`: read+add+create+write on named blobs of the output prefix of an assignment the node
  holds now (its node row in the cluster's sched partition), or of its own setup output prefix.
A node's events go through `post_event`, never a SAS of the events queue (which would let a node
speak for any other: preempt it, make it unusable): the service puts them on the queue once the
event names the node that proved itself.
The service deletes a node's queues when it removes the node (`node_state.delete`).
Refusals are ARM errors: 400 bad body, 401 no or bad token, 403 a valid token that does not prove
this node or names that are not its to write.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import ports
from shared.adapters import auth, join_tokens, message_signing, node_tokens, sas, storage, tokens
from shared.adapters.compute import vmss
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.errors import ApiError, bad_request, unauthorized
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import NodeEvent
from shared.ports.contract import Missing
from shared.services import nodes

LIFETIME = timedelta(hours=1)
MAX_NAMES = 256  # blob names per request
MAX_NAME_LENGTH = 1024  # Azure's limit for a blob name
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


MACHINE, TOKEN = "machine", "token"  # how a node proved itself


@dataclass(frozen=True)
class Node:
    cluster_key: str
    node_id: str
    proof: str = MACHINE  # MACHINE: a managed identity of its own (it reads Key Vault itself); TOKEN: none


def forbidden(message: str) -> ApiError:
    return ApiError(403, "AuthorizationFailed", message)


def _string(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{field}' must be a non-empty string.", field)
    return value


def _node_of(body: Any) -> Node:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    try:
        cluster_key = ClusterRef.from_key(_string(body, "clusterKey")).key
    except ValueError as error:
        raise bad_request("'clusterKey' is not a cluster key.", "clusterKey") from error
    node_id = _string(body, "nodeId")
    if not _NODE_ID.match(node_id):
        raise bad_request("'nodeId' is not a node id.", "nodeId")
    return Node(cluster_key, node_id)


def scale_set_identity(settings: Settings, cluster_key: str) -> str:
    """The `xms_mirid` of the system identity of a cluster's scale set, as Azure writes it."""
    return (f"/subscriptions/{settings.azure.subscription_id}/resourcegroups/{settings.azure.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss.scale_set_name(cluster_key)}")


def authenticate(settings: Settings, authorization: str | None, body: Any) -> Node:
    """The node the request is from, proven by its token; raises ApiError 400/401/403."""
    node = _node_of(body)
    token = auth.bearer_token(authorization)
    if token is None:
        raise unauthorized()
    if node_tokens.is_node_token(token):
        row = node_tokens.lookup(settings.storage_connection_string, node.cluster_key, node.node_id, token)
        if row is None:
            raise forbidden(f"The node token does not prove node '{node.node_id}' of this cluster.")
        why = f"node '{node.node_id}' was removed from the cluster at {row['retiredAt']}" if row.get("retiredAt") \
            else join_tokens.valid(settings.storage_connection_string, node.cluster_key, str(row["joinToken"]),
                                   datetime.now(UTC)) if row.get("joinToken") else None
        if why:  # a machine that joined holds while its join token does
            raise ApiError(401, "InvalidAuthenticationToken", f"The node's credential no longer holds: {why}.")
        return Node(node.cluster_key, node.node_id, TOKEN)
    if not settings.token_issuer:
        raise ApiError(401, "InvalidAuthenticationToken", "The service trusts no token issuer (BATCHAI_TOKEN_ISSUER).")
    validator = tokens.validator(settings.token_issuer, [settings.azure.node_token_audience],
                                 settings.token_issuer_ca_file)
    try:
        claims = validator.validate(token)
    except tokens.InvalidToken as error:
        raise ApiError(401, "InvalidAuthenticationToken", f"The token was refused: {error}.") from error
    except tokens.IssuerUnreachable as error:
        raise ApiError(503, "ServiceUnavailable", "The token issuer cannot be reached; try again.") from error
    identity = str(claims.get("xms_mirid") or "")
    if identity.lower() != scale_set_identity(settings, node.cluster_key).lower():
        raise forbidden("The token's identity is not the system identity of this cluster's scale set.")
    if not node.node_id.startswith(vmss.computer_name_prefix(node.cluster_key)):
        raise forbidden(f"Node '{node.node_id}' is not a node of this cluster.")
    return node


def credentials(settings: Settings, authorization: str | None, body: Any, now: datetime) -> dict[str, Any]:
    node = authenticate(settings, authorization, body)
    conn = settings.storage_connection_string
    expires = now + LIFETIME
    queue = storage.node_queue_name(node.node_id)
    poison = f"{queue}-poison"
    port = ports.of(conn)
    for name in (queue, poison):
        port.queues.ensure(name)
    wheels: list[str] = []
    with contextlib.suppress(Missing):  # no wheelhouse published
        wheels = sorted(blob.name for blob in port.blobs.list(storage.C_WHEELHOUSE))
    return {
        "expiresOn": expires.isoformat(),
        "nodeQueue": sas.queue_url(conn, queue, "rp", expires),
        "poisonQueue": sas.queue_url(conn, poison, "a", expires),
        "heartbeat": sas.blob_url(conn, storage.C_HEARTBEATS, storage.heartbeat_blob(node.cluster_key, node.node_id),
                                  "cw", expires),
        "wheelhouse": [{"name": name, "url": sas.blob_url(conn, storage.C_WHEELHOUSE, name, "r", expires)}
                       for name in wheels],
        "messageKey": signer.public_key if (signer := message_signing.signer(settings)) else "",
        "keyVaultHosts": list(settings.key_vault_hosts),
    }


def _names(body: Mapping[str, Any]) -> list[str]:
    names = body.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise bad_request("'names' must be a non-empty list of blob names.", "names")
    if len(names) > MAX_NAMES:
        raise bad_request(f"'names' holds {len(names)} names; at most {MAX_NAMES} per request.", "names")
    return names


def output_prefix(settings: Settings, node: Node, assignment_id: str | None) -> str:
    """The prefix in C_OUTPUTS the node may write for this assignment (None: its setup output)."""
    ref = ClusterRef.from_key(node.cluster_key)
    if assignment_id is None:
        return storage.setup_output_prefix(ref.workspace.workspace, ref.name, node.node_id) + "/"
    held = nodes.held_jobs(nodes.get_node(settings, node.cluster_key, node.node_id))
    job_key = next((job for job, held_id in held.items() if held_id and held_id == assignment_id), None)
    if job_key is None:
        raise forbidden(f"Node '{node.node_id}' does not hold assignment '{assignment_id}'.")
    job = JobRef.from_key(job_key)
    doc = ResourceStore(settings.storage_connection_string, storage.T_JOBS).get(job.experiment.job_pk,
                                                                                job.name.lower())
    if doc is None:
        raise forbidden(f"The job of assignment '{assignment_id}' is gone.")
    segment = (doc.data.get("properties") or {}).get("jobOutputDirectoryPathSegment") or ""
    return storage.output_prefix(job.experiment.workspace.workspace, job.experiment.name, job.name, segment) + "/"


def _within(name: str, prefix: str) -> bool:
    rest = name[len(prefix):]
    return (name.startswith(prefix) and len(name) <= MAX_NAME_LENGTH and bool(rest)
            and all(part not in ("", ".", "..") for part in rest.split("/")))


def blobs(settings: Settings, authorization: str | None, body: Any, now: datetime) -> dict[str, Any]:
    node = authenticate(settings, authorization, body)
    names = _names(body)
    assignment_id = body.get("assignmentId")
    if assignment_id is not None and (not isinstance(assignment_id, str) or not assignment_id):
        raise bad_request("'assignmentId' must be a string, or null for the node's setup output.", "assignmentId")
    prefix = output_prefix(settings, node, assignment_id)
    outside = next((name for name in names if not _within(name, prefix)), None)
    if outside is not None:
        raise forbidden(f"Blob '{outside}' is outside the output prefix '{prefix}' this node may write.")
    expires = now + LIFETIME
    conn = settings.storage_connection_string
    return {"expiresOn": expires.isoformat(),
            "blobs": {name: sas.blob_url(conn, storage.C_OUTPUTS, name, "racw", expires) for name in names}}


def post_event(settings: Settings, authorization: str | None, body: Any) -> dict[str, Any]:
    """Put the node's event on the events queue, when it is the node's own (403 otherwise)."""
    node = authenticate(settings, authorization, body)
    event = body.get("event")
    try:
        parsed = NodeEvent.from_dict(event) if isinstance(event, dict) else None
    except TypeError:
        parsed = None
    if parsed is None or not isinstance(parsed.kind, str) or not parsed.kind:
        raise bad_request("'event' must be a node event.", "event")
    if (parsed.cluster_key, parsed.node_id) != (node.cluster_key, node.node_id):
        raise forbidden(f"Node '{node.node_id}' may send its own events only.")
    ports.of(settings.storage_connection_string).queues.send(storage.Q_EVENTS, parsed.to_json())
    return {}
