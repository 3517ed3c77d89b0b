"""Node rows and the node lifecycle. Node rows (`node|{id}` in a cluster's `sched` partition) are
created, moved between states and deleted only here and through the helpers here (used by the
cluster reconciler and the reaper); the scheduler's pass is the one other writer (idle <-> running,
inside its ETag-checked transaction).

Row fields: state (NodeState), address, cores, memoryMb, gpus, jobKey, assignmentId, stateSince,
registeredAt, idleSince, leavingReason, error (JSON {code, message} or ""), history (JSON list,
the last `HISTORY` transitions). Every write is a read-modify-write with the row's ETag, retried
on conflict; every handler here is idempotent (node events arrive at least once, in any order).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters import sched_store, storage
from shared.adapters.compute import provider_for
from shared.adapters.compute.port import ClusterSpec
from shared.adapters.resource_store import Doc, ResourceStore
from shared.config import Settings
from shared.decisions import node_plan
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.messages import NodeEvent, Setup, node_view, setup_version
from shared.domain.states import node_transition
from shared.services.assignments import send_to_node

HISTORY = 20
ATTEMPTS = 20
ACTIVE_INSTANCE = ("creating", "running")

Entity = dict[str, Any]
#: Given the current row (None: no row), the fields to write, or None to leave it as it is.
Change = Callable[[Entity | None], Entity | None]


class ConcurrentUpdates(Exception):
    """A node row kept changing under us (transient: the trigger retries)."""


# --- rows -------------------------------------------------------------------------------------

def _client(settings: Settings) -> TableClient:
    return storage.table(settings.storage_connection_string, storage.T_SCHED)


def get_node(settings: Settings, cluster_key: str, node_id: str) -> Entity | None:
    try:
        return _client(settings).get_entity(cluster_key, sched_store.node_row(node_id))
    except ResourceNotFoundError:
        return None


def node_rows(rows: Sequence[Entity]) -> list[Entity]:
    return [r for r in rows if r["RowKey"].startswith(sched_store.NODE)]


def node_id_of(row: Entity) -> str:
    return row["RowKey"][len(sched_store.NODE):]


def mutate_node(settings: Settings, cluster_key: str, node_id: str, change: Change) -> Entity | None:
    """Read the row, ask `change` what to write, write it If-Match; on a conflict read and ask again.
    Returns the row as written (or as read when nothing changed; None when there is none)."""
    client = _client(settings)
    for _ in range(ATTEMPTS):
        row = get_node(settings, cluster_key, node_id)
        fields = change(dict(row) if row is not None else None)
        if fields is None:
            return row
        entity = {"PartitionKey": cluster_key, "RowKey": sched_store.node_row(node_id), **fields}
        try:
            if row is None:
                client.create_entity(entity)
            else:
                client.update_entity(entity, mode=UpdateMode.MERGE, etag=row.metadata["etag"],
                                     match_condition=MatchConditions.IfNotModified)
        except ResourceExistsError:
            continue  # created meanwhile
        except (ResourceNotFoundError, HttpResponseError) as e:
            if isinstance(e, ResourceNotFoundError) or e.status_code in (404, 412):
                continue
            raise
        return get_node(settings, cluster_key, node_id)
    raise ConcurrentUpdates(f"node {node_id} of {cluster_key} kept changing")


def delete_node(settings: Settings, cluster_key: str, node_id: str,
                keep: Callable[[Entity], bool] = lambda row: False) -> bool:
    """Delete the row (If-Match) unless `keep(row)` says otherwise on the row as last read; with the
    row go the node's queues (a node may not delete them itself; callers remove nodes that are gone)."""
    client = _client(settings)
    for _ in range(ATTEMPTS):
        row = get_node(settings, cluster_key, node_id)
        if row is None:
            delete_queues(settings, node_id)
            return True
        if keep(row):
            return False
        try:
            client.delete_entity(cluster_key, row["RowKey"], etag=row.metadata["etag"],
                                 match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as e:
            if e.status_code == 412:
                continue
            if e.status_code != 404:
                raise
        delete_queues(settings, node_id)
        return True
    raise ConcurrentUpdates(f"node {node_id} of {cluster_key} kept changing")


def delete_queues(settings: Settings, node_id: str) -> None:
    """The node's queue and poison queue (idempotent)."""
    queue = storage.node_queue_name(node_id)
    for name in (queue, f"{queue}-poison"):
        with contextlib.suppress(ResourceNotFoundError):
            storage.queue(settings.storage_connection_string, name).delete_queue()


def new_row_fields(state: str, now: datetime, **extra: Any) -> Entity:
    return {"nodeId": extra.pop("nodeId", ""), "state": state, "address": "", "cores": 0, "memoryMb": 0,
            "gpus": 0, "jobKey": "", "assignmentId": "", "stateSince": now.isoformat(), "registeredAt": "",
            "idleSince": "", "leavingReason": "", "error": "",
            "history": json.dumps([{"from": None, "to": state, "at": now.isoformat(), "reason": "recorded"}]),
            **extra}


def moved(row: Entity | None, target: str, reason: str, now: datetime, **extra: Any) -> Entity:
    """The fields that move `row` to `target` (checked against the node state machine), with
    `extra`; for a missing row, a whole new row in `target`."""
    if row is None:
        return new_row_fields(target, now, **extra)
    if row["state"] == target:
        return extra
    entry = node_transition(row["state"], target, reason, now)
    history = json.loads(row.get("history") or "[]")[-(HISTORY - 1):] + [entry]
    return {"state": target, "stateSince": now.isoformat(), "history": json.dumps(history), **extra}


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time as written by the service or an agent (naive means UTC)."""
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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

def held_jobs(row: Entity | None) -> dict[str, str]:
    """{job key: assignment id} of the jobs a node row holds (`jobs` JSON under GPU-slot packing,
    else jobKey/assignmentId)."""
    if row is None:
        return {}
    if row.get("jobs"):
        return {k: v.get("assignmentId") or "" for k, v in json.loads(row["jobs"]).items()}
    return {row["jobKey"]: row.get("assignmentId") or ""} if row.get("jobKey") else {}


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
    row = get_node(settings, key, node_id)
    step = node_plan.event_step(event.kind, row["state"] if row else None)
    if step.target is None:
        return  # late or duplicate: the row has moved on
    if row is None and (doc is None or not instance_exists(settings, spec, node_id)):
        return  # not (or no longer) an instance of a live cluster: the reconciler cleans up
    if step.release_job and event.kind == node_plan.UNUSABLE:
        requeue_all(settings, row, f"node {node_id} became unusable: {(event.error or {}).get('message', '')}",
                    count_retry=True)

    def change(current: Entity | None) -> Entity | None:
        s = node_plan.event_step(event.kind, current["state"] if current else None)
        if s.target is None:
            return None
        extra = _event_fields(event, current, s.target, now)
        return moved(current, s.target, event.kind, now, **extra) or None

    written = mutate_node(settings, key, node_id, change)
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
    for src, dst in (("address", "address"), ("cores", "cores"), ("memoryMb", "memoryMb"), ("gpus", "gpus")):
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
