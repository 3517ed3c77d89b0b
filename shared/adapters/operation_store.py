"""Long-running API operations (asynchronous deletes and terminations) in table `operations`.

One row per operation: PartitionKey "op", RowKey the operation id; `kind`, `target` (the
resource's key fields as JSON), `resourceId` (the resource's names joined by '$', as Batch AI
reported it), `status` (InProgress | Succeeded | Failed), `error`, `createdAt`, `finishedAt`. The
row is the recorded intent; the operation-result endpoints only read it.

The operations still in progress are indexed in partition "inflight" (RowKey the operation id,
`createdAt`), so the reconcile tick that advances them reads live work only, not every operation
ever recorded. The index row is written before the operation and removed after it finished: an
index row without an operation is the trace of a create that failed half-way.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters import storage

PK = "op"
INFLIGHT = "inflight"


@dataclass
class Operation:
    op_id: str
    kind: str
    target: dict[str, Any]
    status: str
    error: dict[str, Any] | None
    etag: str
    resource_id: str = ""
    created_at: str = ""
    finished_at: str = ""


def create(conn: str, op_id: str, kind: str, target: dict[str, Any], at: str, resource_id: str = "",
           finished: bool = False) -> None:
    """Record an operation: InProgress (indexed as in flight), or Succeeded at once when `finished`."""
    if not finished:
        storage.table(conn, storage.T_OPERATIONS).upsert_entity({"PartitionKey": INFLIGHT, "RowKey": op_id,
                                                                  "createdAt": at})
    entity = {"PartitionKey": PK, "RowKey": op_id, "kind": kind, "target": json.dumps(target),
              "resourceId": resource_id, "status": "Succeeded" if finished else "InProgress", "createdAt": at}
    if finished:
        entity["finishedAt"] = at
    storage.table(conn, storage.T_OPERATIONS).create_entity(entity)


def get(conn: str, op_id: str) -> Operation | None:
    try:
        e = storage.table(conn, storage.T_OPERATIONS).get_entity(PK, op_id)
    except ResourceNotFoundError:
        return None
    return Operation(op_id, e["kind"], json.loads(e["target"]), e["status"],
                     json.loads(e["error"]) if e.get("error") else None, e.metadata["etag"],
                     e.get("resourceId") or "", e.get("createdAt") or "", e.get("finishedAt") or "")


def finish(conn: str, op: Operation, status: str, at: str, error: dict[str, Any] | None = None) -> None:
    """Record the outcome (ETag-checked; a concurrent poll that finished it first wins, which is the same)."""
    entity = {"PartitionKey": PK, "RowKey": op.op_id, "status": status, "finishedAt": at}
    if error:
        entity["error"] = json.dumps(error)
    storage.table(conn, storage.T_OPERATIONS).update_entity(
        entity, mode=UpdateMode.MERGE, etag=op.etag, match_condition=MatchConditions.IfNotModified)


def in_flight(conn: str) -> list[tuple[str, str]]:
    """(operation id, createdAt) of every operation indexed as in progress."""
    rows = storage.table(conn, storage.T_OPERATIONS).query_entities("PartitionKey eq @pk",
                                                                    parameters={"pk": INFLIGHT})
    return [(r["RowKey"], r.get("createdAt") or "") for r in rows]


def forget(conn: str, op_id: str) -> None:
    """Take an operation out of the in-flight index (idempotent)."""
    with contextlib.suppress(ResourceNotFoundError):
        storage.table(conn, storage.T_OPERATIONS).delete_entity(INFLIGHT, op_id)
