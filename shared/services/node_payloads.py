"""The node payload API: what a node runs, fetched by reference. Node queues carry ids only
(`shared.domain.messages`); a node asks here for the documents behind them, over TLS, with its
node credential (`node_credentials.authenticate`), and gets them with secrets opened.

- `assignment` (``POST /nodeagent/assignment``): the `AssignedTask` of one task of an assignment,
  answered only while this node holds it: the asg row of the job names this assignment id and
  attempt, and this node at the task's rank; the node row holds the assignment; the job still
  holds it (assigned, running or terminating). 404 when there is no such assignment any more, 409
  when the job has moved on to another assignment or attempt, 403 when it is another node's.
- `setup` (``POST /nodeagent/setup``): the cluster's `NodeSetup` (mount volumes, setup task), for a
  node of the cluster that is joining or has joined it (404 no node row, 409 a node on its way out).

Key Vault references are left to nodes that have a managed identity of their own (machines read
the vault themselves); for a node with a node token only (a local process), the service resolves
them here with its own identity (`shared.adapters.service_identity`). A secret the service cannot
read (not found, forbidden, vault not allowed) is recorded on its reference, so that the node
fails the task with that reason; an unreachable vault is a 503 (the node asks again).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ClientAuthenticationError

from shared import ports
from shared.adapters import key_vault, secret_box, service_identity, storage
from shared.config import Settings
from shared.domain.errors import ApiError, bad_request
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import AssignedTask, NodeSetup, node_view, setup_version
from shared.domain.secret_refs import mark_unresolved, references
from shared.services import assignments, job_state, nodes
from shared.services.node_credentials import TOKEN, Node, authenticate, forbidden

SETUP_STATES = frozenset({"preparing", "idle", "running"})


def open_secrets(settings: Settings, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its sealed secret values opened (values stored before sealing pass as they are)."""
    return dict(secret_box.open_all(settings, copy.deepcopy(document)))


def _string(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{field}' must be a non-empty string.", field)
    return value


def _count(body: Mapping[str, Any], field: str, minimum: int) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise bad_request(f"'{field}' must be an integer of at least {minimum}.", field)
    return value


def _resolve_for(settings: Settings, node: Node, document: dict[str, Any]) -> dict[str, Any]:
    """Key Vault references resolved for a node without an identity of its own (in place)."""
    if node.proof != TOKEN:
        return document
    for slot in references(document):
        try:
            token = service_identity.token(settings, key_vault.RESOURCE)
            value = key_vault.read_secret(slot.secret_url, token, settings.key_vault_hosts,
                                          settings.key_vault_ca_file)
        except key_vault.VaultUnavailable as error:
            raise ApiError(503, "ServiceUnavailable", f"Key Vault cannot be reached; try again ({error}).") from error
        except (key_vault.VaultRefused, ClientAuthenticationError, OSError, RuntimeError, ValueError) as error:
            # permanent for this secret (or no identity to read it with): the node reports it
            mark_unresolved(slot, f"{type(error).__name__}: {error}")
            continue
        slot.holder[slot.value_key] = value
        del slot.holder[slot.reference_key]
    return document


def assignment(settings: Settings, authorization: str | None, body: Any) -> dict[str, Any]:
    node = authenticate(settings, authorization, body)
    assignment_id, job_key = _string(body, "assignmentId"), _string(body, "jobKey")
    task_index, attempt = _count(body, "taskIndex", 0), _count(body, "attempt", 1)
    # The four documents the answer rests on, read side by side (checked in order below).
    asg_read = ports.beside(assignments.get, settings, node.cluster_key, job_key)
    node_read = ports.beside(nodes.get_node, settings, node.cluster_key, node.node_id)
    job_read = ports.beside(lambda: job_state.get(settings, JobRef.from_key(job_key)))
    cluster_read = ports.beside(nodes.load_cluster, settings, node.cluster_key)
    asg = asg_read.result()
    if asg is None:
        raise ApiError(404, "AssignmentNotFound", f"Assignment '{assignment_id}' does not exist (any more).")
    if asg.assignment_id != assignment_id or asg.attempt != attempt:
        raise ApiError(409, "AssignmentSuperseded",
                       f"Assignment '{assignment_id}' (attempt {attempt}) is no longer the job's assignment.")
    if task_index >= len(asg.nodes) or asg.nodes[task_index].node_id != node.node_id \
            or nodes.held_jobs(node_read.result()).get(job_key) != assignment_id:
        raise forbidden(f"Node '{node.node_id}' does not hold task {task_index} of assignment '{assignment_id}'.")
    ref, doc, cluster = JobRef.from_key(job_key), job_read.result(), cluster_read.result()
    if doc is None or not assignments.holds(doc, asg):
        raise ApiError(409, "AssignmentSuperseded", f"The job of assignment '{assignment_id}' has moved on.")
    props = _resolve_for(settings, node, open_secrets(settings, doc.data.get("properties") or {}))
    view = _resolve_for(settings, node, open_secrets(settings, node_view(
        (cluster.data.get("properties") or {}) if cluster else {})))
    prefix = storage.output_prefix(ref.experiment.workspace.workspace, ref.experiment.name, ref.name,
                                   props.get("jobOutputDirectoryPathSegment") or "")
    return AssignedTask(assignment_id=assignment_id, job_key=job_key, job_arm_id=str(doc.data.get("id") or ""),
                        attempt=attempt, task_index=task_index, nodes=asg.nodes, job=props, cluster=view,
                        output_container=storage.C_OUTPUTS, output_prefix=prefix,
                        gpus=None if asg.gpus is None else list(asg.gpus.get(node.node_id, []))).to_dict()


def setup(settings: Settings, authorization: str | None, body: Any) -> dict[str, Any]:
    node = authenticate(settings, authorization, body)
    row = nodes.get_node(settings, node.cluster_key, node.node_id)
    if row is None:
        raise ApiError(404, "NodeNotFound", f"Node '{node.node_id}' is not a node of this cluster.")
    if row["state"] not in SETUP_STATES:
        raise ApiError(409, "NodeLeaving", f"Node '{node.node_id}' is {row['state']}: it does not join the cluster.")
    cluster = nodes.load_cluster(settings, node.cluster_key)
    if cluster is None:
        raise ApiError(404, "ClusterNotFound", f"Cluster '{ClusterRef.from_key(node.cluster_key).name}' is gone.")
    view = node_view(cluster.data.get("properties") or {})
    version = setup_version(view)
    return NodeSetup(version, _resolve_for(settings, node, open_secrets(settings, view))).to_dict()
