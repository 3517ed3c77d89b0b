"""Node rows (`node|{id}` in a cluster's `sched` partition): every write of one is made or computed here.

A node's state changes only through `moved()`, which checks the move against the node state machine
(`domain.states.NODE_TRANSITIONS`) and appends the history entry; the named changes below are what
the node events, the cluster reconciler and the reaper may do to a row, each a read-modify-write
with the row's ETag (the storage port's `read_modify_write`), retried on conflict, and a no-op when
its premise no longer holds (so every caller is idempotent). The scheduling pass and
`assignments.release` commit node rows together with their pending and asg rows in one transaction;
the fields they write come from `take_fields` and `free_fields` here.

Row fields: state (NodeState), address, cores, memoryMb, gpus, jobKey, assignmentId, jobs (JSON
{job key: {assignmentId, slots, gpus: the GPU indices it holds}}) and usedSlots (GPU-slot packing), packing
(the cluster's, written by the first take: the pass reads it here instead of the cluster's document),
stateSince, registeredAt, idleSince, leavingReason, error (JSON {code, message} or ""),
scaleInProtected, history (JSON list, the last `HISTORY` transitions).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared import ports
from shared.adapters import sched_store, storage
from shared.config import Settings
from shared.domain.states import NodeState, node_transition
from shared.ports.contract import Table
from shared.ports.rows import Contended, Insert, Row, Write, merge, read_modify_write
from shared.ports.rows import delete as delete_row

HISTORY = 20
ATTEMPTS = 20

Entity = dict[str, Any]
#: A row as read (a port `Row`, or a plain dict of one): read with dict access only.
RowLike = Mapping[str, Any]
#: Given the current row (None: no row), the fields to write, or None to leave it as it is.
Change = Callable[[Entity | None], Entity | None]
R = TypeVar("R", bound=RowLike)


class ConcurrentUpdates(Contended):
    """A node row kept changing under us (transient: the trigger retries)."""


# --- reading ----------------------------------------------------------------------------------

def _table(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_SCHED)


def get(settings: Settings, cluster_key: str, node_id: str) -> Row | None:
    return _table(settings).get(cluster_key, sched_store.node_row(node_id))


def node_rows(rows: Sequence[R]) -> list[R]:
    return [r for r in rows if r["RowKey"].startswith(sched_store.NODE)]


def node_id_of(row: RowLike) -> str:
    return row["RowKey"][len(sched_store.NODE):]


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time as written by the service or an agent (naive means UTC)."""
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def node_jobs(row: RowLike) -> dict[str, dict[str, Any]]:
    """The jobs a node row holds: {job key: {assignmentId, slots}} (whole-node rows: jobKey only)."""
    if row.get("jobs"):
        return json.loads(row["jobs"])
    if row.get("jobKey"):
        return {row["jobKey"]: {"assignmentId": row.get("assignmentId") or "", "slots": 1}}
    return {}


def busy_gpus(row: RowLike) -> frozenset[int]:
    """The GPU indices the jobs on a node row hold."""
    return frozenset(int(i) for job in node_jobs(row).values() for i in job.get("gpus") or ())


def held_jobs(row: RowLike | None) -> dict[str, str]:
    """{job key: assignment id} of the jobs a node row holds."""
    return {} if row is None else {k: v.get("assignmentId") or "" for k, v in node_jobs(row).items()}


# --- the one transition -----------------------------------------------------------------------

def new_row_fields(state: str, now: datetime, **extra: Any) -> Entity:
    return {"nodeId": extra.pop("nodeId", ""), "state": state, "address": "", "cores": 0, "memoryMb": 0,
            "gpus": 0, "jobKey": "", "assignmentId": "", "stateSince": now.isoformat(), "registeredAt": "",
            "idleSince": "", "leavingReason": "", "error": "",
            "history": json.dumps([{"from": None, "to": state, "at": now.isoformat(), "reason": "recorded"}]),
            **extra}


def moved(row: RowLike | None, target: str, reason: str, now: datetime, **extra: Any) -> Entity:
    """The fields that move `row` to `target` (checked against the node state machine), with
    `extra`; for a missing row, a whole new row in `target`."""
    if row is None:
        return new_row_fields(target, now, **extra)
    if row["state"] == target:
        return extra
    entry = node_transition(row["state"], target, reason, now)
    history = json.loads(row.get("history") or "[]")[-(HISTORY - 1):] + [entry]
    return {"state": target, "stateSince": now.isoformat(), "history": json.dumps(history), **extra}


def take_fields(row: RowLike, job_key: str, assignment_id: str, slots: int, now: datetime,
                gpus: Sequence[int] = (), packing: str | None = None) -> Entity:
    """The merge that gives a node (idle, or running under gpu-slots packing) to a job, with the GPU
    indices its task gets, and the cluster's packing it was given under (when the caller knows it:
    the next pass reads it there instead of from the cluster's document)."""
    jobs = node_jobs(row)
    jobs[job_key] = {"assignmentId": assignment_id, "slots": slots, **({"gpus": list(gpus)} if gpus else {})}
    fields: Entity = {"jobs": json.dumps(jobs), "usedSlots": sum(int(j["slots"]) for j in jobs.values())}
    if packing and row.get("packing") != packing:
        fields["packing"] = packing
    if not row.get("jobKey"):
        fields.update(jobKey=job_key, assignmentId=assignment_id)
    if row["state"] != NodeState.RUNNING:
        fields.update(moved(row, NodeState.RUNNING, f"assigned job {job_key}", now))
    return fields


def free_fields(row: RowLike, job_key: str, assignment_id: str, now: datetime) -> Entity | None:
    """The merge that takes a job off a node (None: the node does not hold that assignment). The
    node goes back to idle when nothing is left on it, unless it is leaving, unusable or lost."""
    jobs = node_jobs(row)
    if jobs.get(job_key, {}).get("assignmentId") != assignment_id:
        return None
    del jobs[job_key]
    first = next(iter(jobs.items()), None)
    fields: Entity = {"jobs": json.dumps(jobs) if jobs else "",
                      "usedSlots": sum(int(j["slots"]) for j in jobs.values()),
                      "jobKey": first[0] if first else "", "assignmentId": first[1]["assignmentId"] if first else ""}
    if not jobs and row["state"] == NodeState.RUNNING:
        fields.update(moved(row, NodeState.IDLE, f"job {job_key} ended", now), idleSince=now.isoformat())
    return fields


# --- writing ----------------------------------------------------------------------------------

def mutate(settings: Settings, cluster_key: str, node_id: str, change: Change) -> Row | None:
    """Read the row, ask `change` what to write, write it If-Match (`read_modify_write`); on a conflict
    read and ask again. Returns the row as written (or as read when nothing changed; None when there
    is none)."""
    row_key = sched_store.node_row(node_id)

    def decide(row: Row | None) -> tuple[Write | None, tuple[bool, Row | None]]:
        fields = change(dict(row) if row is not None else None)
        if fields is None:
            return None, (False, row)
        return (Insert(cluster_key, row_key, fields) if row is None else merge(row, fields)), (True, None)

    try:
        (written, row), _ = read_modify_write(_table(settings), cluster_key, row_key, decide, ATTEMPTS)
    except Contended as e:
        raise ConcurrentUpdates(f"node {node_id} of {cluster_key} kept changing") from e
    return get(settings, cluster_key, node_id) if written else row


def delete(settings: Settings, cluster_key: str, node_id: str,
           keep: Callable[[Row], bool] = lambda row: False) -> bool:
    """Delete the row (If-Match) unless `keep(row)` says otherwise on the row as last read; with the
    row go the node's queues (a node may not delete them itself; callers remove nodes that are gone)."""
    def decide(row: Row | None) -> tuple[Write | None, bool]:
        if row is None:
            return None, True
        return (None, False) if keep(row) else (delete_row(row), True)

    try:
        deleted, _ = read_modify_write(_table(settings), cluster_key, sched_store.node_row(node_id), decide,
                                       ATTEMPTS)
    except Contended as e:
        raise ConcurrentUpdates(f"node {node_id} of {cluster_key} kept changing") from e
    if deleted:
        delete_queues(settings, node_id)
    return deleted


def delete_queues(settings: Settings, node_id: str) -> None:
    """The node's queue and poison queue (idempotent)."""
    queue = storage.node_queue_name(node_id)
    queues = ports.of(settings.storage_connection_string).queues
    for name in (queue, f"{queue}-poison"):
        queues.drop(name)


# --- the named changes ------------------------------------------------------------------------

def adopt(settings: Settings, cluster_key: str, node_id: str, address: str, now: datetime,
          login: tuple[str, int] | None = None) -> bool:
    """A starting row for an instance that has none; False when it has one already. `login`: where the
    provider exposes the node's sshd (address, port), recorded on the row whenever it changes."""
    created: list[bool] = []
    login_fields = {"loginAddress": login[0], "loginPort": login[1]} if login else {}

    def change(row: Entity | None) -> Entity | None:
        created.clear()  # asked again after a conflict: only the last answer counts
        if row is not None:
            changed = any(row.get(k) != v for k, v in login_fields.items())
            return dict(login_fields) if changed else None
        created.append(True)
        return new_row_fields(NodeState.STARTING, now, nodeId=node_id, address=address, **login_fields)

    mutate(settings, cluster_key, node_id, change)
    return bool(created)


def lose(settings: Settings, cluster_key: str, node_id: str, reason: str, now: datetime,
         unless: Collection[str] = (NodeState.LOST,)) -> Row | None:
    """Move the node to lost (no pass assigns it any more); the row as it is after, or None when it
    is gone. A row in a state of `unless` is left as it is."""
    return mutate(settings, cluster_key, node_id, lambda row: None if row is None or row["state"] in unless
                  else moved(row, NodeState.LOST, reason, now))


def make_unusable(settings: Settings, cluster_key: str, node_id: str, reason: str, error: dict[str, str],
                  now: datetime, only_from: Collection[str], since: str | None = None) -> Row | None:
    """Move the node to unusable with its error, only from the states `only_from` (and, given
    `since`, only while its stateSince is still that: the state the caller decided on)."""
    def change(row: Entity | None) -> Entity | None:
        if row is None or row["state"] not in only_from or (since is not None and row.get("stateSince") != since):
            return None
        return moved(row, NodeState.UNUSABLE, reason, now, error=json.dumps(error))

    return mutate(settings, cluster_key, node_id, change)


def make_leaving(settings: Settings, cluster_key: str, node_id: str, reason: str, now: datetime,
                 job_key: str, busy: bool) -> Row | None:
    """Mark the node leaving, only if it still holds `job_key` ("" none) and is still running
    (`busy`) or not; the row as it is after (check its state: unchanged when the premise failed)."""
    def change(row: Entity | None) -> Entity | None:
        if row is None or row["state"] == NodeState.LEAVING:
            return None
        if (row.get("jobKey") or "") != job_key or (row["state"] == NodeState.RUNNING) != busy:
            return None
        return moved(row, NodeState.LEAVING, reason, now, leavingReason=reason)

    return mutate(settings, cluster_key, node_id, change)


def record_protection(settings: Settings, cluster_key: str, node_id: str, protected: bool) -> None:
    """Remember the scale-in protection last set on the node's instance."""
    mutate(settings, cluster_key, node_id, lambda row: None if row is None
           or bool(row.get("scaleInProtected")) == protected else {"scaleInProtected": protected})


def apply(settings: Settings, cluster_key: str, node_id: str, target: Callable[[Entity | None], str | None],
          reason: str, now: datetime, fields: Callable[[Entity | None, str], Entity]) -> Row | None:
    """A node event's change: `target(row)` (None: ignore the event), with `fields(row, target)`."""
    def change(row: Entity | None) -> Entity | None:
        goal = target(row)
        if goal is None:
            return None
        return moved(row, goal, reason, now, **fields(row, goal)) or None

    return mutate(settings, cluster_key, node_id, change)
