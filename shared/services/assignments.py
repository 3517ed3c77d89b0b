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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import ports, telemetry
from shared.adapters import message_signing, sched_store, storage
from shared.adapters.resource_store import Doc
from shared.config import Settings
from shared.domain.keys import JobRef
from shared.domain.messages import Assignment, NodeAddress, NodeMessage, StopTask
from shared.domain.states import JobPhase
from shared.ports.contract import Table
from shared.ports.rows import Contended, Delete, Merge, Row, StaleEtag, Write, merge, read_modify_write
from shared.services import job_state, node_state

ATTEMPTS = 20
MAX_OPS = 100  # entity-group transaction limit (Azurite drops the connection beyond it)
CHUNK = 30_000  # characters per string property (UTF-16 in Table storage: 60 KB < 64 KiB)
HOLDING_PHASES = frozenset({JobPhase.ASSIGNED, JobPhase.RUNNING, JobPhase.TERMINATING})

Entity = dict[str, Any]


class ConcurrentUpdates(Contended):
    """Rows kept changing under us (transient: the trigger retries)."""


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


def sched(settings: Settings) -> Table:
    """The `sched` table (every cluster's partition) through the storage port."""
    return ports.of(settings.storage_connection_string).table(storage.T_SCHED)


def parse(row: Row) -> AsgRow:
    """An asg row as read (or as just written: `Row.of` the written fields with the write's ETag)."""
    return AsgRow(cluster_key=row["PartitionKey"], job_key=row["jobKey"], assignment_id=row["assignmentId"],
                  nodes=[NodeAddress(**n) for n in json.loads(joined(row, "nodes") or "[]")],
                  attempt=int(row.get("attempt") or 1), slots=int(row.get("slots") or 1),
                  tasks=json.loads(joined(row, "tasks") or "{}"), dispatched=bool(row.get("dispatched")),
                  created_at=datetime.fromisoformat(row["createdAt"]), etag=row.etag,
                  gpus=json.loads(joined(row, "gpus")) if row.get("gpus") else None)


def split(name: str, value: Any) -> Entity:
    """`value` as JSON in properties `name`, `name1`, `name2`, ... of at most `CHUNK` characters each (a
    Table string property holds 64 KiB: the node list and task results of a large gang take several)."""
    text = json.dumps(value, separators=(",", ":"))
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    return {(name if i == 0 else f"{name}{i}"): part for i, part in enumerate(parts)}


def joined(entity: Mapping[str, Any], name: str) -> str:
    parts, i = [entity.get(name) or ""], 1
    while f"{name}{i}" in entity:
        parts.append(entity[f"{name}{i}"] or "")
        i += 1
    return "".join(parts)


def get(settings: Settings, cluster_key: str, job_key: str) -> AsgRow | None:
    row = sched(settings).get(cluster_key, sched_store.assignment_row(job_key))
    return None if row is None else parse(row)


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
    try:
        written = sched(settings).write(Merge(asg.cluster_key, sched_store.assignment_row(asg.job_key), fields,
                                              asg.etag))
    except StaleEtag:
        return False
    asg.etag = written or asg.etag
    return True


# --- node rows (their fields are `node_state`'s) --------------------------------------------

def _node_rows(table: Table, cluster_key: str, node_ids: list[str]) -> list[Row]:
    """The gang's node rows that are still there (a node lost and deleted has nothing to free)."""
    rows = [table.get(cluster_key, sched_store.node_row(node_id)) for node_id in node_ids]
    return [row for row in rows if row is not None]


def release(settings: Settings, cluster_key: str, job_key: str, assignment_id: str, now: datetime,
            known: AsgRow | None = None, kick: bool = True) -> bool:
    """Free the assignment's nodes and delete its asg row, in one transaction (a gang larger than one
    transaction: its nodes in several, each with the asg row If-Match, the delete last). Idempotent:
    False when the asg row is gone or belongs to another assignment. Kicks the cluster after a release,
    unless the caller runs a pass itself (`kick=False`: a redelivery of its trigger must then run
    that pass again). `known`: the asg row as the caller last wrote it (its ETag saves a read)."""
    table = sched(settings)
    for _ in range(ATTEMPTS):
        asg, known = (known, None) if known is not None else (get(settings, cluster_key, job_key), None)
        if asg is None or asg.assignment_id != assignment_id:
            return False
        frees: list[Write] = []
        for row in _node_rows(table, cluster_key, asg.node_ids):
            fields = node_state.free_fields(row, job_key, assignment_id, now)
            if fields is not None:
                frees.append(merge(row, fields))
        row_key = sched_store.assignment_row(job_key)
        try:
            while len(frees) > MAX_OPS - 1:
                chunk, frees = frees[:MAX_OPS - 1], frees[MAX_OPS - 1:]
                written = table.transact(chunk + [Merge(cluster_key, row_key, {"releasing": True}, asg.etag)])
                asg.etag = written[-1] or asg.etag
            table.transact(frees + [Delete(cluster_key, row_key, asg.etag)])
        except StaleEtag:
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
    fields = {"dispatched": True, "dispatchedAt": now.isoformat()}
    if update(settings, asg, fields):  # the row as the pass wrote it: most often still so
        return True

    def mark(row: Row | None) -> tuple[Write | None, bool]:
        if row is None or row.get("assignmentId") != asg.assignment_id or row.get("dispatched"):
            return None, True
        return merge(row, fields), True

    read_modify_write(sched(settings), asg.cluster_key, sched_store.assignment_row(asg.job_key), mark, ATTEMPTS)
    return True


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
    text = message_signing.sign(settings, message.to_json(), node_id)
    ports.of(settings.storage_connection_string).queues.send(storage.node_queue_name(node_id), text, create=True)


def send_stop(settings: Settings, node_ids: list[str], assignment_id: str, reason: str) -> None:
    for node_id in node_ids:
        send_to_node(settings, node_id, StopTask(assignment_id=assignment_id, reason=reason))
