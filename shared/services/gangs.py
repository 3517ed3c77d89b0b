"""Gangs larger than one entity-group transaction (a transaction holds at most `MAX_OPS` operations):
their nodes are reserved in several ETag-checked transactions, with the asg row as the reservation.

1. The first transaction deletes the job's pending row (If-Match), creates its asg row marked
   `reserving` and takes the first nodes (If-Match each, as a scheduling pass does).
2. Each further transaction takes the next nodes and updates the asg row (If-Match): only the
   pass that created the reservation can extend it; the last one clears `reserving`.
3. A conflict on any of them rolls the reservation back: the pending row is written again (first,
   so the job is never out of the index once the asg row is gone), then the nodes are freed and the
   asg row deleted (`assignments.release`, itself chunked). The pass re-reads and decides again.

Nothing is dispatched while the asg row is `reserving`. A pass that dies half-way leaves a
reservation that the safety pass rolls back once it is older than `STALE_AFTER`
(`rollback_stale`), so no node stays held by a job that was never dispatched.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import sched_store
from shared.config import Settings
from shared.decisions.gpu_slots import job_slots
from shared.decisions.scheduler import Placement
from shared.domain.keys import JobRef
from shared.domain.messages import NodeAddress
from shared.ports.rows import Delete, Insert, Merge, Row, StaleEtag, Upsert, Write, key_fields
from shared.services import assignments, job_state, node_state
from shared.services.assignments import MAX_OPS, AsgRow

STALE_AFTER = timedelta(seconds=30)

RowLike = Mapping[str, Any]


def fits_one_transaction(node_count: int) -> bool:
    """Whether a gang commits in one transaction (its nodes, the pending delete, the asg create)."""
    return node_count + 2 <= MAX_OPS


def reserve(settings: Settings, cluster_key: str, placement: Placement, nodes: dict[str, Row],
            pending: Row, now: datetime) -> AsgRow | None:
    """Reserve a large gang's nodes (snapshot rows `nodes`, the job's `pending` row); the asg row,
    ready to dispatch, or None after a conflict (rolled back: decide again)."""
    table = assignments.sched(settings)
    gang = [NodeAddress(n, str(nodes[n].get("address") or "")) for n in placement.node_ids]
    entity = {**assignments.new_entity(cluster_key, placement.job_key, placement.assignment_id, gang,
                                       placement.attempt, placement.slots, now,
                                       dict(zip(placement.node_ids, placement.gpus, strict=False))),
              "reserving": True}
    first, rest = placement.node_ids[:MAX_OPS - 2], placement.node_ids[MAX_OPS - 2:]
    ops = _take(cluster_key, first, nodes, placement, now)
    ops.append(Delete(cluster_key, pending["RowKey"], pending.etag))
    ops.append(Insert(*key_fields(entity)))
    try:
        etag = table.transact(ops)[-1]
    except StaleEtag:
        return None  # nothing was written
    while rest:
        chunk, rest = rest[:MAX_OPS - 1], rest[MAX_OPS - 1:]
        ops = _take(cluster_key, chunk, nodes, placement, now)
        ops.append(Merge(cluster_key, entity["RowKey"], {"reserving": bool(rest)}, etag))
        try:
            etag = table.transact(ops)[-1]
        except StaleEtag:
            rollback(settings, cluster_key, pending, placement.job_key, placement.assignment_id, now)
            return None
    return assignments.get(settings, cluster_key, placement.job_key)


def rollback(settings: Settings, cluster_key: str, pending: RowLike, job_key: str, assignment_id: str,
             now: datetime) -> bool:
    """Undo a reservation: the pending row back (as it was), then the nodes freed and the asg row
    deleted. Idempotent; False when the reservation is gone or another assignment's."""
    fields = {k: pending[k] for k in ("jobKey", "priority", "submittedAt", "nodeCount", "attempt", "slots")
              if k in pending}
    assignments.sched(settings).write(Upsert(pending["PartitionKey"], pending["RowKey"], fields))
    return assignments.release(settings, cluster_key, job_key, assignment_id, now)


def rollback_stale(settings: Settings, row: Row, now: datetime) -> bool:
    """The safety pass's part: a reservation left `reserving` longer than `STALE_AFTER` (its pass
    died) is rolled back, its job's pending row rebuilt from the asg row. False otherwise."""
    if not row.get("reserving"):
        return False
    asg = assignments.parse(row)
    if now - asg.created_at < STALE_AFTER:
        return False
    doc = job_state.get(settings, JobRef.from_key(asg.job_key))
    if doc is None:
        return assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now)
    props, internal = doc.data.get("properties") or {}, doc.data.get("internal") or {}
    priority = str(props.get("schedulingPriority") or "normal").lower()
    submitted = datetime.fromisoformat(internal["submittedAt"])
    pending = sched_store.pending_entity(asg.cluster_key, asg.job_key, priority, submitted,
                                         int(props.get("nodeCount") or len(asg.nodes)), asg.attempt,
                                         job_slots(props))
    return rollback(settings, asg.cluster_key, pending, asg.job_key, asg.assignment_id, now)


def _take(cluster_key: str, node_ids: list[str], nodes: dict[str, Row], placement: Placement,
          now: datetime) -> list[Write]:
    ops: list[Write] = []
    for node_id in node_ids:
        row = nodes[node_id]
        fields = node_state.take_fields(row, placement.job_key, placement.assignment_id, placement.slots, now,
                                        placement.gpus_on(node_id))
        ops.append(Merge(cluster_key, row["RowKey"], fields, row.etag))
    return ops
