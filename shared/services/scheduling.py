"""Scheduling passes: read a cluster's sched partition, decide (shared.decisions.scheduler), commit.

A pass commits each batch of its decision as ONE entity-group transaction: for every placement,
the chosen node rows (If-Match: idle -> running, jobKey, assignmentId), the delete of the job's
pending row (If-Match) and the create of its `asg|` row. So no node is over-committed and no job
is assigned twice however many passes run at once: a conflict (the storage port's `StaleEtag`) rolls
the whole batch back; the pass drops its decision, re-reads and decides again. A gang larger than
one transaction is reserved over several, with its asg row as the reservation (`gangs`). After a
commit, `dispatch` moves each job to assigned and sends the nodes their Assignments. Rows are read
and written through the storage port (`shared.ports`): snapshot rows are its `Row`s, with their ETags.
The cluster's packing comes from its node rows (`recorded_packing`); its document is read only when
they record none or disagree, and not at all by a pass that finds nothing it could place.

What a crash between those steps leaves behind is repaired by the safety pass (`safety_pass`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import ports, telemetry
from shared.adapters import sched_store, storage
from shared.adapters.resource_store import Doc, ResourceStore
from shared.config import Settings
from shared.decisions.gpu_slots import job_slots, node_slots
from shared.decisions.scheduler import (
    PACKINGS,
    WHOLE_NODE,
    NodeView,
    PendingJob,
    Placement,
    SchedulingReply,
    SchedulingRequest,
    Waiting,
    room_now,
    saturated,
    schedule,
)
from shared.domain.keys import ClusterRef
from shared.domain.messages import NodeAddress
from shared.ports.rows import Delete, Insert, Merge, Row, StaleEtag, Write, key_fields
from shared.services import assignments, gangs, node_state
from shared.services.assignments import MAX_OPS

MAX_CONFLICTS = 25
REDISPATCH_AFTER = timedelta(seconds=5)

PENDING_PAGE = 32  # pending rows a pass reads first; more only when the decision could use them


Entity = dict[str, Any]


@dataclass
class PassResult:
    cluster_key: str
    assigned: list[Placement] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)  # empty when the pass found no room to decide on
    conflicts: int = 0
    released: list[str] = field(default_factory=list)  # committed, but the job had moved on
    gave_up: bool = False  # conflicts kept coming; a kick was queued to finish later


@dataclass
class Snapshot:
    nodes: dict[str, Row]
    pending: dict[str, Row]  # job key -> pending row (jobs without an asg row)
    asgs: dict[str, Row]  # job key -> asg row
    more: Iterator[list[Row]] | None = None  # further pending pages, when only the first were read

    def add_pending(self, rows: list[Row]) -> None:
        for row in rows:
            if row["jobKey"] not in self.asgs:
                self.pending[row["jobKey"]] = row

    def read_rest(self) -> None:
        for page in self.more or ():
            self.add_pending(page)
        self.more = None


def read_snapshot(settings: Settings, cluster_key: str) -> Snapshot:
    snap = Snapshot({}, {}, {})
    for row in sched_store.partition(settings.storage_connection_string, cluster_key):
        rk: str = row["RowKey"]
        if rk.startswith(sched_store.NODE):
            snap.nodes[rk[len(sched_store.NODE):]] = row
        elif rk.startswith(sched_store.ASSIGNMENT):
            snap.asgs[row["jobKey"]] = row
        elif rk.startswith(sched_store.PENDING):
            snap.pending[row["jobKey"]] = row
    for key in snap.asgs:
        snap.pending.pop(key, None)
    return snap


def read_pass_snapshot(settings: Settings, cluster_key: str) -> Snapshot:
    """Nodes, assignments and the first page of the pending index, read side by side; the rest of
    the index stays in `more` until the decision shows it is needed (`scheduler.saturated`)."""
    conn = settings.storage_connection_string
    pages = sched_store.pending_pages(conn, cluster_key, PENDING_PAGE)
    first_page = ports.beside(next, pages, [])
    snap = Snapshot({}, {}, {})
    for row in sched_store.rows_before_pending(conn, cluster_key):
        rk: str = row["RowKey"]
        if rk.startswith(sched_store.NODE):
            snap.nodes[rk[len(sched_store.NODE):]] = row
        elif rk.startswith(sched_store.ASSIGNMENT):
            snap.asgs[row["jobKey"]] = row
    first = first_page.result()
    snap.add_pending(first)
    snap.more = pages if len(first) >= PENDING_PAGE else None
    return snap


def _decide(snap: Snapshot, packing: str, now: datetime, new_id: Callable[[], str]) -> SchedulingReply:
    """The decision on what the snapshot holds, reading further pending pages until it is the
    decision on the whole index."""
    while True:
        request = request_for(snap, packing, now, new_id)
        reply = schedule(request)
        if snap.more is None or saturated(request, reply):
            return reply
        snap.read_rest()


def read_cluster(settings: Settings, cluster_key: str) -> Doc | None:
    ref = ClusterRef.from_key(cluster_key)
    return ResourceStore(settings.storage_connection_string, storage.T_CLUSTERS).get(ref.workspace.child_pk,
                                                                                     ref.name.lower())


def packing_of(doc: Doc | None) -> str:
    packing = ((doc.data.get("internal") or {}).get("packing") if doc else None) or WHOLE_NODE
    return packing if packing in PACKINGS else WHOLE_NODE


def cluster_packing(settings: Settings, cluster_key: str) -> str:
    return packing_of(read_cluster(settings, cluster_key))


def _node_view(node_id: str, row: Row) -> NodeView:
    jobs = node_state.node_jobs(row)
    gpus, cores = int(row.get("gpus") or 0), int(row.get("cores") or 0)
    return NodeView(node_id=node_id, state=row.get("state", ""), slots=node_slots(gpus, cores),
                    used_slots=sum(int(j.get("slots") or 1) for j in jobs.values()), jobs=tuple(jobs),
                    gpus=gpus, busy_gpus=node_state.busy_gpus(row))


def _pending_job(row: Row) -> PendingJob:
    return PendingJob(job_key=row["jobKey"], priority=row.get("priority") or "normal",
                      submitted_at=datetime.fromisoformat(row["submittedAt"]),
                      node_count=int(row.get("nodeCount") or 1), attempt=int(row.get("attempt") or 1),
                      slots=int(row.get("slots") or 1))


def request_for(snap: Snapshot, packing: str, now: datetime, new_id: Callable[[], str]) -> SchedulingRequest:
    pending = [_pending_job(r) for r in snap.pending.values()]
    return SchedulingRequest(nodes=[_node_view(i, r) for i, r in snap.nodes.items()], pending=pending, now=now,
                             new_ids=[new_id() for _ in pending], packing=packing)


def _batch(placements: list[Placement]) -> list[Placement]:
    """The longest prefix of placements whose operations fit one transaction."""
    nodes: set[str] = set()
    batch: list[Placement] = []
    for p in placements:
        ops = len(nodes | set(p.node_ids)) + 2 * (len(batch) + 1)
        if ops > MAX_OPS:
            break
        nodes |= set(p.node_ids)
        batch.append(p)
    return batch


def commit_operations(snap: Snapshot, cluster_key: str, batch: list[Placement],
                      now: datetime, packing: str | None = None) -> tuple[list[Write], list[Entity]]:
    """The transaction of a batch, and the asg rows it creates (the nodes taken record `packing`)."""
    merged: dict[str, Mapping[str, Any]] = {}  # node id -> the node row as it will be (packing may reuse a node)
    changes: dict[str, Entity] = {}
    asg_rows: list[Entity] = []
    ops: list[Write] = []
    for p in batch:
        for node_id in p.node_ids:
            row = merged.get(node_id, snap.nodes[node_id])
            fields = node_state.take_fields(row, p.job_key, p.assignment_id, p.slots, now, p.gpus_on(node_id),
                                           packing)
            merged[node_id] = {**row, **fields}
            changes[node_id] = {**changes.get(node_id, {}), **fields}
        pend = snap.pending[p.job_key]
        ops.append(Delete(cluster_key, pend["RowKey"], pend.etag))
        gang = [NodeAddress(n, str(snap.nodes[n].get("address") or "")) for n in p.node_ids]
        asg_rows.append(assignments.new_entity(cluster_key, p.job_key, p.assignment_id, gang, p.attempt, p.slots, now,
                                               dict(zip(p.node_ids, p.gpus, strict=False))))
        ops.append(Insert(*key_fields(asg_rows[-1])))
    for node_id, fields in changes.items():
        node = snap.nodes[node_id]
        ops.insert(0, Merge(cluster_key, node["RowKey"], fields, node.etag))
    return ops, asg_rows


def run_pass(settings: Settings, cluster_key: str, now: datetime,
             new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> PassResult:
    """Assign what can be assigned now, batch by batch, until the decision is committed whole."""
    result = PassResult(cluster_key)
    snap = read_pass_snapshot(settings, cluster_key)
    packing: str | None = None
    while True:
        packing = packing or recorded_packing(snap)
        if not could_place(snap, packing):
            return result
        packing = packing or cluster_packing(settings, cluster_key)  # read once, and only when it can matter
        reply = _decide(snap, packing, now, new_id)
        result.waiting = reply.waiting  # of the jobs the pass read
        if not reply.assignments:
            return result
        batch = _batch(reply.assignments)
        if batch:
            committed = _commit(settings, snap, cluster_key, batch, now, packing)
        else:  # the first placement is a gang larger than one transaction
            big = reply.assignments[0]
            reserved = gangs.reserve(settings, cluster_key, big, snap.nodes, snap.pending[big.job_key], now)
            committed = None if reserved is None else [(big, reserved)]
        if committed is None:
            result.conflicts += 1
            if result.conflicts >= MAX_CONFLICTS:
                # Others keep changing the partition; a queued kick finishes the work later.
                sched_store.kick(settings.storage_connection_string, cluster_key)
                result.gave_up = True
                return result
            snap = read_pass_snapshot(settings, cluster_key)
            continue
        for placement, asg in committed:
            if assignments.dispatch(settings, asg, now):
                result.assigned.append(placement)
            else:
                result.released.append(placement.job_key)
        if len(committed) == len(batch) == len(reply.assignments):
            # The whole decision is committed: deciding again on a fresh read would place nothing more,
            # since whatever changed since (a job, a freed node) kicks a pass of its own.
            return result
        snap = read_pass_snapshot(settings, cluster_key)


def recorded_packing(snap: Snapshot) -> str | None:
    """The cluster's packing as its node rows record it (each take writes it), when they agree.
    Node rows go with their cluster, so what they record is the packing of the cluster they are in."""
    recorded = {row.get("packing") for row in snap.nodes.values()} - {None, ""}
    packing = recorded.pop() if len(recorded) == 1 else None
    return packing if packing in PACKINGS else None


def could_place(snap: Snapshot, packing: str | None) -> bool:
    """Is there a pending job and a node that could take one now under `packing` (None: either)? A
    pass that finds none decides nothing (its `waiting` stays empty) and reads no cluster document."""
    if not snap.pending and snap.more is None:
        return False
    return room_now([_node_view(node_id, row) for node_id, row in snap.nodes.items()], packing)


def _commit(settings: Settings, snap: Snapshot, cluster_key: str, batch: list[Placement],
            now: datetime, packing: str) -> list[tuple[Placement, assignments.AsgRow]] | None:
    """Commit a batch as one transaction; its asg rows, or None after a conflict (nothing written)."""
    table = assignments.sched(settings)
    ops, asg_rows = commit_operations(snap, cluster_key, batch, now, packing)
    try:
        written = table.transact(ops)
    except StaleEtag:
        return None
    etags = {op.rk: etag for op, etag in zip(ops, written, strict=True) if isinstance(op, Insert)}
    committed = []
    for placement, entity in zip(batch, asg_rows, strict=True):
        pk, rk, fields = key_fields(entity)
        etag = etags.get(rk)
        row = Row.of(pk, rk, fields, etag) if etag else table.get(pk, rk)
        if row is None:  # deleted since (released already): the job's dispatch finds nothing to hold
            continue
        committed.append((placement, assignments.parse(row)))
    return committed


# --- one pass at a time per cluster in this process --------------------------------------------

@dataclass
class _Flight:
    again: bool = False  # a request joined the running pass: run once more


_flights: dict[str, _Flight] = {}  # cluster key -> the pass this process is running for it
_flights_lock = threading.Lock()


def run_pass_coalesced(settings: Settings, cluster_key: str, clock: Callable[[], datetime]) -> PassResult | None:
    """Run a pass of the cluster, or join the one this process is already running for it.

    A request that arrives while a pass of the same cluster runs here returns None at once and makes
    that pass run once more when it ends, with a fresh snapshot that sees whatever the request was
    about; many kicks thus cost one or two passes instead of racing for the same rows. Nothing is
    lost when the process dies: the running pass's own trigger message is still held and comes
    back. When the running pass fails after a request joined it, a kick is queued for the joined
    request before the error propagates."""
    with _flights_lock:
        flight = _flights.get(cluster_key)
        if flight is not None:
            flight.again = True
            return None
        flight = _flights[cluster_key] = _Flight()
    rerun = False  # this iteration serves requests that joined
    try:
        while True:
            began = time.monotonic()
            with telemetry.span("scheduling pass", **{"batchai.cluster": cluster_key}):
                result = run_pass(settings, cluster_key, clock())
            telemetry.record("batchai.scheduling.pass.duration", time.monotonic() - began,
                             description="One scheduling pass of a cluster.")
            with _flights_lock:
                if not flight.again:
                    del _flights[cluster_key]
                    return result
                flight.again, rerun = False, True
    except BaseException:
        with _flights_lock:
            del _flights[cluster_key]
        if flight.again or rerun:
            sched_store.kick(settings.storage_connection_string, cluster_key)
        raise


def add_pending_for(settings: Settings, cluster_key: str, job_key: str, data: dict[str, Any]) -> None:
    """Put a job (back) in the pending index with its original submit time, so it keeps its place."""
    props = data.get("properties") or {}
    internal = data.get("internal") or {}
    sched_store.add_pending(settings.storage_connection_string, cluster_key, job_key,
                            str(props.get("schedulingPriority") or "normal").lower(),
                            datetime.fromisoformat(internal["submittedAt"]), int(props.get("nodeCount") or 1),
                            attempt=int(internal.get("attempt") or 1), slots=job_slots(props))


def pending_row_key(data: dict[str, Any], job_key: str) -> str:
    props = data.get("properties") or {}
    return sched_store.pending_row(str(props.get("schedulingPriority") or "normal").lower(),
                                   datetime.fromisoformat((data.get("internal") or {})["submittedAt"]), job_key)
