"""The scheduling partition of a cluster in the `sched` table, and the kick that starts a pass.

One partition per cluster (PartitionKey = cluster key) holds, so that one scheduling decision
commits as one entity-group transaction with If-Match ETags:
- ``node|{node id}``: a node (state, address, inventory, jobKey, assignmentId, history, error);
- ``pend|{rank}|{submittedAt}|{job key}``: the pending-job index, in scheduling order
  (rank 0 high, 1 normal, 2 low; then submit time);
- ``asg|{job key}``: the assignment of a job to its gang (assignmentId, nodes, per-task results).
The row layout is owned here; what the fields mean is owned by the services that write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared import telemetry
from shared.adapters import storage

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
    storage.table(conn, storage.T_SCHED).upsert_entity(
        pending_entity(cluster_key, job_key, priority, submitted_at, node_count, attempt, slots))


def kick(conn: str, cluster_key: str) -> None:
    """Ask for a scheduling pass of the cluster (at-least-once; passes are idempotent). The kick
    carries the current trace, so the pass it starts is a span of what asked for it."""
    body = {"cluster": cluster_key}
    parent = telemetry.traceparent()
    if parent:
        body["traceparent"] = parent
    storage.queue(conn, storage.Q_KICKS).send_message(json.dumps(body))


def partition(conn: str, cluster_key: str) -> list[dict[str, Any]]:
    """Every row of the cluster's partition, with their ETags in `metadata`."""
    client = storage.table(conn, storage.T_SCHED)
    return list(client.query_entities("PartitionKey eq @pk", parameters={"pk": cluster_key}))


def rows_before_pending(conn: str, cluster_key: str) -> list[dict[str, Any]]:
    """The partition's rows that sort before the pending index (``asg|`` and ``node|`` rows)."""
    client = storage.table(conn, storage.T_SCHED)
    return list(client.query_entities("PartitionKey eq @pk and RowKey lt @pend",
                                      parameters={"pk": cluster_key, "pend": PENDING}))


def pending_pages(conn: str, cluster_key: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """The pending index in scheduling order (the row keys sort by rank, then submit time), a page
    at a time: a reader that has seen enough stops early."""
    client = storage.table(conn, storage.T_SCHED)
    end = PENDING[:-1] + chr(ord(PENDING[-1]) + 1)
    pages = client.query_entities("PartitionKey eq @pk and RowKey ge @pend and RowKey lt @end",
                                  parameters={"pk": cluster_key, "pend": PENDING, "end": end},
                                  results_per_page=page_size).by_page()
    for page in pages:
        yield list(page)
