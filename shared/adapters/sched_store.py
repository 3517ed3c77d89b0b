"""The scheduling partition of a cluster in the `sched` table, and the kick that starts a pass.

One partition per cluster (PartitionKey = cluster key) holds, so that one scheduling decision
commits as one entity-group transaction with If-Match ETags:
- ``node|{node id}``: a node (state, address, inventory, jobKey, assignmentId, history, error);
- ``pend|{rank}|{submittedAt}|{job key}``: the pending-job index, in scheduling order
  (rank 0 high, 1 normal, 2 low; then submit time);
- ``asg|{job key}``: the assignment of a job to its gang (assignmentId, nodes, per-task results).
The row layout is owned here; what the fields mean is owned by the services that write them. Rows are
read and written through the storage port (`shared.ports`); what they return are its `Row`s, each
with the ETag it was read with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared import ports, telemetry
from shared.adapters import storage
from shared.ports.rows import Query, Row, Upsert, key_fields

NODE = "node|"
PENDING = "pend|"
ASSIGNMENT = "asg|"

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


def node_row(node_id: str) -> str:
    return f"{NODE}{node_id}"


def assignment_row(job_key: str) -> str:
    return f"{ASSIGNMENT}{job_key}"


def pending_row(priority: str, submitted_at: datetime, job_key: str) -> str:
    return f"{PENDING}{PRIORITY_RANK[priority]}|{submitted_at.strftime('%Y%m%dT%H%M%S.%fZ')}|{job_key}"


def pending_entity(cluster_key: str, job_key: str, priority: str, submitted_at: datetime, node_count: int,
                   attempt: int = 1, slots: int = 1) -> dict[str, Any]:
    return {
        "PartitionKey": cluster_key,
        "RowKey": pending_row(priority, submitted_at, job_key),
        "jobKey": job_key,
        "priority": priority,
        "submittedAt": submitted_at.isoformat(),
        "nodeCount": node_count,
        "attempt": attempt,
        "slots": slots,  # per node, under gpu-slots packing
    }


def add_pending(conn: str, cluster_key: str, job_key: str, priority: str, submitted_at: datetime,
                node_count: int, attempt: int = 1, slots: int = 1) -> None:
    """Put a job in its cluster's pending index (idempotent: the row key is the job's identity)."""
    pk, rk, fields = key_fields(pending_entity(cluster_key, job_key, priority, submitted_at, node_count, attempt,
                                               slots))
    ports.of(conn).table(storage.T_SCHED).write(Upsert(pk, rk, fields))


def kick(conn: str, cluster_key: str) -> None:
    """Ask for a scheduling pass of the cluster (at-least-once; passes are idempotent). The kick
    carries the current trace, so the pass it starts is a span of what asked for it."""
    body = {"cluster": cluster_key}
    parent = telemetry.traceparent()
    if parent:
        body["traceparent"] = parent
    ports.of(conn).queues.send(storage.Q_KICKS, json.dumps(body))


def partition(conn: str, cluster_key: str) -> list[Row]:
    """Every row of the cluster's partition, with their ETags."""
    return list(ports.of(conn).table(storage.T_SCHED).query(Query(pk=cluster_key)))


def rows_before_pending(conn: str, cluster_key: str) -> list[Row]:
    """The partition's rows that sort before the pending index (``asg|`` and ``node|`` rows)."""
    return list(ports.of(conn).table(storage.T_SCHED).query(Query(pk=cluster_key, rk_range=("", PENDING))))


def pending_pages(conn: str, cluster_key: str, page_size: int) -> Iterator[list[Row]]:
    """The pending index in scheduling order (the row keys sort by rank, then submit time), a page
    at a time: a reader that has seen enough stops early."""
    table = ports.of(conn).table(storage.T_SCHED)
    end = PENDING[:-1] + chr(ord(PENDING[-1]) + 1)
    query = Query(pk=cluster_key, rk_range=(PENDING, end))
    rows, token = table.page(query, page_size)
    yield rows
    while token is not None:
        rows, token = table.page(query, page_size, token)
        yield rows
