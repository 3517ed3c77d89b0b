"""The node lifecycle: what node events do (registration, readiness, faults, preemption), and the
helpers the reconciler and the reaper share to act on clusters, providers and the jobs nodes hold.
Node rows are written only through `node_state` (whose readers are named here too, for the node
routes); every handler here is idempotent (node events arrive at least once, in any order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.adapters import sched_store, storage
from shared.adapters.compute import provider_for
from shared.adapters.compute.port import ClusterSpec
from shared.adapters.resource_store import Doc, ResourceStore
from shared.config import Settings
from shared.decisions import node_plan
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import NodeEvent, Setup, node_view, setup_version
from shared.services import node_state
from shared.services.assignments import send_to_node
from shared.services.node_state import get as get_node  # noqa: F401 - the readers of node rows, for the node routes
from shared.services.node_state import held_jobs, node_id_of, node_rows, parse_time  # noqa: F401

ACTIVE_INSTANCE = ("creating", "running")

Entity = dict[str, Any]


# --- clusters and providers -------------------------------------------------------------------

def load_cluster(settings: Settings, cluster_key: str) -> Doc | None:
    ref = ClusterRef.from_key(cluster_key)
    return ResourceStore(settings.storage_connection_string, storage.T_CLUSTERS).get(
        ref.workspace.child_pk, ref.name.lower())


def cluster_spec(cluster_key: str, doc: Doc | None) -> ClusterSpec:
    props = (doc.data.get("properties") if doc else None) or {}
    return ClusterSpec(cluster_key=cluster_key, arm_id=(doc.data.get("id") if doc else None)
                       or ClusterRef.from_key(cluster_key).arm_id, vm_size=props.get("vmSize", ""),
                       vm_priority=str(props.get("vmPriority") or "dedicated").lower(), properties=props)


def remove_instances(settings: Settings, spec: ClusterSpec, node_ids: Sequence[str]) -> None:
    """Delete these instances and start none (the reconciler decides about replacements)."""
    if not node_ids:
        return
    provider = provider_for(settings, spec)
    others = [i for i in provider.list_instances(spec.cluster_key)
              if i.state in ACTIVE_INSTANCE and i.node_id not in node_ids]
    provider.reconcile(spec, len(others), remove=list(node_ids))


def instance_exists(settings: Settings, spec: ClusterSpec, node_id: str) -> bool:
    return any(i.node_id == node_id and i.state in ACTIVE_INSTANCE
               for i in provider_for(settings, spec).list_instances(spec.cluster_key))


# --- jobs held by nodes (their state belongs to the job services) ------------------------------

def requeue_all(settings: Settings, row: Entity | None, reason: str, count_retry: bool) -> None:
    for job_key, assignment_id in held_jobs(row).items():
        requeue(settings, job_key, assignment_id, reason, count_retry)


def requeue(settings: Settings, job_key: str, assignment_id: str, reason: str, count_retry: bool) -> None:
    if not job_key:
        return
    from shared.services.task_events import requeue_job

    requeue_job(settings, job_key, assignment_id, reason, count_retry)


def terminate(settings: Settings, job_key: str, reason: str) -> None:
    if not job_key:
        return
    from shared.services.job_control import terminate_job

    terminate_job(settings, JobRef.from_key(job_key), reason)


# --- node events ------------------------------------------------------------------------------

def handle_node_event(settings: Settings, event: NodeEvent, now: datetime) -> None:
    """node-registered -> preparing + Setup; node-ready -> idle + kick; node-unusable -> unusable
    with the error; node-preempted -> leaving, its job requeued (no retry counted), instance removed."""
    if event.kind not in node_plan.NODE_EVENT_KINDS:
        raise ValueError(f"not a node event: {event.kind!r}")
    key, node_id = event.cluster_key, event.node_id
    doc = load_cluster(settings, key)
    spec = cluster_spec(key, doc)
    row = node_state.get(settings, key, node_id)
    step = node_plan.event_step(event.kind, row["state"] if row else None)
    if step.target is None:
        return  # late or duplicate: the row has moved on
    if row is None and (doc is None or not instance_exists(settings, spec, node_id)):
        return  # not (or no longer) an instance of a live cluster: the reconciler cleans up
    if step.release_job and event.kind == node_plan.UNUSABLE:
        requeue_all(settings, row, f"node {node_id} became unusable: {(event.error or {}).get('message', '')}",
                    count_retry=True)

    def target(current: Entity | None) -> str | None:
        return node_plan.event_step(event.kind, current["state"] if current else None).target

    written = node_state.apply(settings, key, node_id, target, event.kind, now,
                               lambda current, goal: _event_fields(event, current, goal, now))
    if written is None or written["state"] != step.target:
        return
    if step.send_setup and doc is not None:
        send_to_node(settings, node_id, Setup(key, setup_version(node_view(doc.data.get("properties") or {}))))
    if step.kick:
        sched_store.kick(settings.storage_connection_string, key)
    if event.kind == node_plan.PREEMPTED:
        requeue_all(settings, written, f"node {node_id} was preempted (low-priority eviction)", count_retry=False)
        remove_instances(settings, spec, [node_id])


def _event_fields(event: NodeEvent, row: Entity | None, target: str, now: datetime) -> Entity:
    fields: Entity = {"nodeId": event.node_id} if row is None else {}
    inv = event.inventory or {}
    for src, dst in (("address", "address"), ("cores", "cores"), ("memoryMb", "memoryMb"), ("gpus", "gpus"),
                     ("sshPort", "sshPort")):
        if src in inv and (row is None or row.get(dst) != inv[src]):
            fields[dst] = inv[src]
    if target in ("preparing", "idle") and (row is None or not row.get("registeredAt")):
        fields["registeredAt"] = now.isoformat()
    if target == "idle" and (row is None or row["state"] != "idle"):
        fields["idleSince"] = now.isoformat()
    if target == "unusable":
        error = event.error or {"code": "NodeUnusable", "message": f"node {event.node_id} reported a fault"}
        if row is None or row.get("error") != json.dumps(error):
            fields["error"] = json.dumps(error)
    if target == "leaving" and (row is None or row.get("leavingReason") != "preempted"):
        fields["leavingReason"] = "preempted"
    return fields
