"""Long-running API operations (asynchronous deletes and terminations) in table `operations`.

One row per operation: PartitionKey "op", RowKey the operation id; `kind`, `target` (the
resource's key fields as JSON), `resourceId` (the resource's names joined by '$', as Batch AI
reported it), `status` (InProgress | Succeeded | Failed), `error`, `createdAt`, `finishedAt`. The
row is the recorded intent; the operation-result endpoints only read it.

The operations still in progress are indexed in partition "inflight" (RowKey the operation id,
`createdAt`), so the reconcile tick that advances them reads live work only, not every operation
ever recorded. The index row is written before the operation and removed after it finished: an
index row without an operation is the trace of a create that failed half-way. Rows are read and
written through the storage port (`shared.ports`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.ports.contract import Table
from shared.ports.rows import Delete, Insert, Merge, Query, Upsert

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


def _table(conn: str) -> Table:
    return ports.of(conn).table(storage.T_OPERATIONS)


def create(conn: str, op_id: str, kind: str, target: dict[str, Any], at: str, resource_id: str = "",
           finished: bool = False) -> None:
    """Record an operation: InProgress (indexed as in flight), or Succeeded at once when `finished`
    (StaleEtag when the id is taken)."""
    if not finished:
        _table(conn).write(Upsert(INFLIGHT, op_id, {"createdAt": at}))
    fields = {"kind": kind, "target": json.dumps(target), "resourceId": resource_id,
              "status": "Succeeded" if finished else "InProgress", "createdAt": at}
    if finished:
        fields["finishedAt"] = at
    _table(conn).write(Insert(PK, op_id, fields))


def get(conn: str, op_id: str) -> Operation | None:
    e = _table(conn).get(PK, op_id)
    if e is None:
        return None
    return Operation(op_id, e["kind"], json.loads(e["target"]), e["status"],
                     json.loads(e["error"]) if e.get("error") else None, e.etag,
                     e.get("resourceId") or "", e.get("createdAt") or "", e.get("finishedAt") or "")


def finish(conn: str, op: Operation, status: str, at: str, error: dict[str, Any] | None = None) -> None:
    """Record the outcome (ETag-checked: StaleEtag when a concurrent poll finished it first, which is the
    same)."""
    fields = {"status": status, "finishedAt": at}
    if error:
        fields["error"] = json.dumps(error)
    _table(conn).write(Merge(PK, op.op_id, fields, op.etag))


def in_flight(conn: str) -> list[tuple[str, str]]:
    """(operation id, createdAt) of every operation indexed as in progress."""
    return [(r.rk, r.get("createdAt") or "") for r in _table(conn).query(Query(pk=INFLIGHT))]


def forget(conn: str, op_id: str) -> None:
    """Take an operation out of the in-flight index (idempotent)."""
    _table(conn).write(Delete(INFLIGHT, op_id))
