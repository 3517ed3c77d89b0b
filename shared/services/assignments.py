"""Assignment rows (`asg|{job key}` in a cluster's sched partition) and what holding one means.

Owned here: the asg row fields (jobKey, assignmentId, nodes, attempt, slots, gpus (JSON {node id:
the GPU indices its task gets}), tasks, dispatched, createdAt, reserving), `release()` (free the
nodes and delete the asg row in ONE ETag-checked transaction; the node-row fields of freeing come
from `node_state.free_fields`) and `dispatch()` (move the job to assigned and send each node its
`Assignment`; `send_again()` when the safety pass asks). The scheduling pass creates asg rows; task
events record task results in them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import telemetry
from shared.adapters import message_signing, sched_store, storage
from shared.adapters.resource_store import Doc
from shared.config import Settings
from shared.domain.keys import JobRef
from shared.domain.messages import Assignment, NodeAddress, NodeMessage, StopTask
from shared.domain.states import JobPhase
from shared.services import job_state, node_state

ATTEMPTS = 20
MAX_OPS = 100  # entity-group transaction limit (Azurite drops the connection beyond it)
CHUNK = 30_000  # characters per string property (UTF-16 in Table storage: 60 KB < 64 KiB)
HOLDING_PHASES = frozenset({JobPhase.ASSIGNED, JobPhase.RUNNING, JobPhase.TERMINATING})

Entity = dict[str, Any]
ETAG_KW = "etag"


class ConcurrentUpdates(Exception):
    """A row kept changing under us (transient: the trigger retries)."""


@dataclass
class AsgRow:
    cluster_key: str
    job_key: str
    assignment_id: str
    nodes: list[NodeAddress]
    attempt: int
    slots: int
    tasks: dict[str, dict[str, Any]]  # task index -> {exitCode, stopReason, error, at}
    dispatched: bool
    created_at: datetime
    etag: str
    gpus: dict[str, list[int]] | None = None  # node id -> its task's GPU indices (None: not recorded)

    @property
    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]


def sched(settings: Settings) -> TableClient:
    return storage.table(settings.storage_connection_string, storage.T_SCHED)


def parse(entity: Entity, etag: str | None = None) -> AsgRow:
    """An asg row as read (its ETag in `metadata`), or as just written (`etag` from the write)."""
    return AsgRow(cluster_key=entity["PartitionKey"], job_key=entity["jobKey"], assignment_id=entity["assignmentId"],
                  nodes=[NodeAddress(**n) for n in json.loads(joined(entity, "nodes") or "[]")],
                  attempt=int(entity.get("attempt") or 1), slots=int(entity.get("slots") or 1),
                  tasks=json.loads(joined(entity, "tasks") or "{}"), dispatched=bool(entity.get("dispatched")),
                  created_at=datetime.fromisoformat(entity["createdAt"]), etag=etag or entity.metadata["etag"],
                  gpus=json.loads(joined(entity, "gpus")) if entity.get("gpus") else None)


def split(name: str, value: Any) -> Entity:
    """`value` as JSON in properties `name`, `name1`, `name2`, ... of at most `CHUNK` characters each (a
    Table string property holds 64 KiB: the node list and task results of a large gang take several)."""
    text = json.dumps(value, separators=(",", ":"))
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    return {(name if i == 0 else f"{name}{i}"): part for i, part in enumerate(parts)}


def joined(entity: Entity, name: str) -> str:
    parts, i = [entity.get(name) or ""], 1
    while f"{name}{i}" in entity:
        parts.append(entity[f"{name}{i}"] or "")
        i += 1
    return "".join(parts)


def get(settings: Settings, cluster_key: str, job_key: str) -> AsgRow | None:
    try:
        return parse(sched(settings).get_entity(cluster_key, sched_store.assignment_row(job_key)))
    except ResourceNotFoundError:
        return None


def new_entity(cluster_key: str, job_key: str, assignment_id: str, nodes: list[NodeAddress], attempt: int,
               slots: int, now: datetime, gpus: dict[str, tuple[int, ...]] | None = None) -> Entity:
    return {"PartitionKey": cluster_key, "RowKey": sched_store.assignment_row(job_key), "jobKey": job_key,
            "assignmentId": assignment_id, **split("nodes", [n.__dict__ for n in nodes]), "attempt": attempt,
            "slots": slots, **({} if gpus is None else split("gpus", {n: list(g) for n, g in gpus.items()})),
            "tasks": "{}",
            "dispatched": False, "createdAt": now.isoformat()}


def update(settings: Settings, asg: AsgRow, fields: Entity) -> bool:
    """Merge fields into the asg row read earlier (If-Match). False when it changed since; on
    success `asg.etag` is the row's new ETag."""
    entity = {"PartitionKey": asg.cluster_key, "RowKey": sched_store.assignment_row(asg.job_key), **fields}
    try:
        written = sched(settings).update_entity(entity, mode=UpdateMode.MERGE, etag=asg.etag,
                                                match_condition=MatchConditions.IfNotModified)
    except HttpResponseError as e:
        if e.status_code in (404, 412):
            return False
        raise
    asg.etag = (written or {}).get("etag") or asg.etag
    return True


# --- node rows (their fields are `node_state`'s) --------------------------------------------

def _node_rows(client: TableClient, cluster_key: str, node_ids: list[str]) -> list[Entity]:
    rows = []
    for node_id in node_ids:
        try:
            rows.append(client.get_entity(cluster_key, sched_store.node_row(node_id)))
        except ResourceNotFoundError:
            continue  # the node row was removed (node lost and deleted): nothing to free
    return rows


def release(settings: Settings, cluster_key: str, job_key: str, assignment_id: str, now: datetime,
            known: AsgRow | None = None, kick: bool = True) -> bool:
    """Free the assignment's nodes and delete its asg row, in one transaction (a gang larger than one
    transaction: its nodes in several, each with the asg row If-Match, the delete last). Idempotent:
    False when the asg row is gone or belongs to another assignment. Kicks the cluster after a release,
    unless the caller runs a pass itself (`kick=False`: a redelivery of its trigger must then run
    that pass again). `known`: the asg row as the caller last wrote it (its ETag saves a read)."""
    client = sched(settings)
    for _ in range(ATTEMPTS):
        asg, known = (known, None) if known is not None else (get(settings, cluster_key, job_key), None)
        if asg is None or asg.assignment_id != assignment_id:
            return False
        frees: list[tuple[str, Entity, dict[str, Any]]] = []
        for row in _node_rows(client, cluster_key, asg.node_ids):
            fields = node_state.free_fields(row, job_key, assignment_id, now)
            if fields is not None:
                frees.append(("update", {"PartitionKey": cluster_key, "RowKey": row["RowKey"], **fields},
                              {"mode": UpdateMode.MERGE, ETAG_KW: row.metadata["etag"],
                               "match_condition": MatchConditions.IfNotModified}))
        row_key = sched_store.assignment_row(job_key)
        try:
            while len(frees) > MAX_OPS - 1:
                chunk, frees = frees[:MAX_OPS - 1], frees[MAX_OPS - 1:]
                written = client.submit_transaction(chunk + [("update", {"PartitionKey": cluster_key,
                                                                         "RowKey": row_key, "releasing": True},
                                                              {"mode": UpdateMode.MERGE, ETAG_KW: asg.etag,
                                                               "match_condition": MatchConditions.IfNotModified})])
                asg.etag = (written[-1] or {}).get("etag") or asg.etag
            client.submit_transaction(frees + [("delete", {"PartitionKey": cluster_key, "RowKey": row_key},
                                                {ETAG_KW: asg.etag,
                                                 "match_condition": MatchConditions.IfNotModified})])
        except TableTransactionError:
            continue  # re-read: the nodes freed so far no longer hold the assignment
        if kick:
            sched_store.kick(settings.storage_connection_string, cluster_key)
        return True
    raise ConcurrentUpdates(f"assignment of {job_key} in {cluster_key} kept changing")


# --- dispatch ---------------------------------------------------------------------------------

def holds(doc: Doc | None, asg: AsgRow) -> bool:
    """Does the job (still) own this assignment?"""
    if doc is None:
        return False
    internal = doc.data.get("internal") or {}
    return internal.get("phase") in HOLDING_PHASES and internal.get("assignmentId") == asg.assignment_id


def dispatch(settings: Settings, asg: AsgRow, now: datetime) -> bool:
    """After a commit: move the job queued -> assigned (fenced by attempt), send each node its
    Assignment, mark the row dispatched. A job that vanished or moved on releases the nodes.
    Returns True when the assignments were sent."""
    ref = JobRef.from_key(asg.job_key)
    nodes = [n.__dict__ for n in asg.nodes]
    doc = job_state.transition(
        settings, ref, JobPhase.ASSIGNED, "a scheduling pass committed nodes for it", now,
        mutate=lambda i: i.update(assignmentId=asg.assignment_id, nodes=nodes, clusterKey=asg.cluster_key),
        allowed_from={JobPhase.QUEUED}, guard=lambda i: int(i.get("attempt") or 1) == asg.attempt)
    if doc is None:
        doc = job_state.get(settings, ref)
        if not holds(doc, asg):
            release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now)
            return False
    # A span of the job's own trace, linked to the pass (which serves many jobs).
    with telemetry.span("dispatch", parent=(doc.data.get("internal") or {}).get("traceparent"),
                        links=[telemetry.traceparent()], **{"batchai.job": asg.job_key,
                                                             "batchai.assignment": asg.assignment_id}):
        send_assignments(settings, asg)
    for _ in range(ATTEMPTS):
        if update(settings, asg, {"dispatched": True, "dispatchedAt": now.isoformat()}):
            return True
        current = get(settings, asg.cluster_key, asg.job_key)
        if current is None or current.assignment_id != asg.assignment_id or current.dispatched:
            return True
        asg = current
    raise ConcurrentUpdates(f"assignment of {asg.job_key} kept changing")


def send_again(settings: Settings, asg: AsgRow, node_ids: list[str], now: datetime, stop: bool = False) -> None:
    """Send these nodes their Assignment again (a node runs an assignment id at most once, and answers a
    repeat of one that ended with its recorded end), or with `stop` (a job being stopped) the stop again
    (answered the same way), and stamp the row's dispatchedAt (If-Match: when the row moved on, the
    next safety pass decides again)."""
    if stop:
        send_stop(settings, node_ids, asg.assignment_id, "terminated")
    else:
        send_assignments(settings, asg, only=set(node_ids))
    update(settings, asg, {"dispatchedAt": now.isoformat()})


def send_assignments(settings: Settings, asg: AsgRow, only: set[str] | None = None) -> None:
    """Tell each node of the gang (or those named) which task is its own: ids only; the node fetches the
    task itself."""
    for index, node in enumerate(asg.nodes):
        if only is not None and node.node_id not in only:
            continue
        send_to_node(settings, node.node_id, Assignment(assignment_id=asg.assignment_id, job_key=asg.job_key,
                                                        attempt=asg.attempt, task_index=index,
                                                        traceparent=telemetry.traceparent()))


def send_to_node(settings: Settings, node_id: str, message: NodeMessage) -> None:
    """Put a message, signed for the node, on its queue (creating the queue only when it is missing)."""
    conn = settings.storage_connection_string
    text = message_signing.sign(settings, message.to_json(), node_id)
    client = storage.queue(conn, storage.node_queue_name(node_id))
    try:
        client.send_message(text)
    except ResourceNotFoundError:
        storage.ensure_queue(conn, storage.node_queue_name(node_id)).send_message(text)


def send_stop(settings: Settings, node_ids: list[str], assignment_id: str, reason: str) -> None:
    for node_id in node_ids:
        send_to_node(settings, node_id, StopTask(assignment_id=assignment_id, reason=reason))
