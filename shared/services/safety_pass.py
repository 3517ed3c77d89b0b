"""The safety pass (timer): repairs what a crash between a scheduling pass's steps leaves behind
(asg rows never dispatched, asg rows whose job no longer holds them, queued jobs missing from the
pending index, pending rows of jobs that are no longer queued, reservations of large gangs whose
pass died), what a storage crash leaves behind (`decisions.handovers`: assignments sent again to nodes
whose heartbeats no longer list them, strays stopped) and kicks every cluster with pending work. It
reads live work only, and each cluster and each row in it is repaired on its own."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import ports, telemetry
from shared.adapters import sched_store, storage
from shared.config import Settings
from shared.decisions import handovers
from shared.decisions.handovers import Beat
from shared.domain.keys import JobRef
from shared.domain.states import JobPhase
from shared.ports.rows import Delete, Query, Row, StaleEtag
from shared.services import assignments, gangs, job_links, job_state, reaper
from shared.services.guarded import Guard, each
from shared.services.scheduling import REDISPATCH_AFTER, Snapshot, add_pending_for, read_snapshot

HANDED_PHASES = (JobPhase.ASSIGNED, JobPhase.RUNNING, JobPhase.TERMINATING)
REHAND_AFTER = timedelta(seconds=30)  # a node's heartbeats lack a held assignment this long: send it again


@dataclass
class SafetyResult:
    clusters: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    readded: list[str] = field(default_factory=list)
    dropped_pending: list[str] = field(default_factory=list)
    kicked: list[str] = field(default_factory=list)
    rehanded: list[str] = field(default_factory=list)  # job keys
    stopped_strays: list[str] = field(default_factory=list)  # assignment ids


def safety_pass(settings: Settings, now: datetime) -> SafetyResult:
    """Repair every cluster that has a sched partition or queued jobs (idempotent; any tick may be
    missed, doubled or late). Reads live work only: the sched table and the queued jobs (the jobs'
    phase column), never every job ever stored. Each cluster, and each row in it, is repaired on its
    own: one bad entity never stops the repair of the others (their failures are raised after)."""
    conn = settings.storage_connection_string
    queued: dict[str, list[Any]] = {}
    for doc in job_state.jobs(settings).query("phase", JobPhase.QUEUED):
        cluster_key = (doc.data.get("internal") or {}).get("clusterKey")
        if cluster_key:
            queued.setdefault(cluster_key, []).append(doc)
    keys = {row["PartitionKey"] for row in ports.of(conn).table(storage.T_SCHED).query(Query(select=()))}
    result = SafetyResult(clusters=sorted(keys | set(queued)))
    _measure_queues(conn)
    each(result.clusters, lambda key: _repair_cluster(settings, key, queued.get(key, []), now, result),
         "repairing the cluster")
    return result


def _measure_queues(conn: str) -> None:
    queues = ports.of(conn).queues
    for name in (storage.Q_KICKS, storage.Q_EVENTS):
        depth = queues.depth(name)  # 0 when not created yet: nothing waits in it
        telemetry.gauge("batchai.queue.depth", depth, description="Messages waiting in a service queue.",
                        **{"batchai.queue": name})


def _repair_cluster(settings: Settings, cluster_key: str, queued_docs: list[Any], now: datetime,
                    result: SafetyResult) -> None:
    beats = reaper.beats(settings.storage_connection_string, cluster_key)  # before the snapshot: see strays()
    snap = read_snapshot(settings, cluster_key)
    queued_keys = {JobRef.from_key(f"{doc.pk}|{doc.rk}").key for doc in queued_docs}
    guard = Guard(f"repairing {cluster_key}:")
    for job_key, entity in list(snap.asgs.items()):
        guard.run(job_key, _repair_asg, settings, cluster_key, job_key, entity, beats, now, result)
    held = {str(e.get("assignmentId")) for e in snap.asgs.values() if e.get("assignmentId")}
    for node_id, stray in handovers.strays(beats, held).items():
        guard.run(node_id, _stop_strays, settings, node_id, stray, result)
    for job_key, row in list(snap.pending.items()):
        guard.run(job_key, _repair_pending, settings, snap, queued_keys, job_key, row, result)
    for doc in queued_docs:
        guard.run(f"{doc.pk}|{doc.rk}", _reindex, settings, cluster_key, snap, doc, result)
    if snap.pending:
        sched_store.kick(settings.storage_connection_string, cluster_key)
        result.kicked.append(cluster_key)
    guard.check()


def _repair_asg(settings: Settings, cluster_key: str, job_key: str, entity: Row, beats: Mapping[str, Beat],
                now: datetime, result: SafetyResult) -> None:
    if entity.get("reserving"):  # a large gang's reservation: never dispatched half-done
        if gangs.rollback_stale(settings, entity, now):
            result.released.append(job_key)
        return
    asg = assignments.parse(entity)
    doc = job_state.get(settings, JobRef.from_key(job_key))
    internal = (doc.data.get("internal") or {}) if doc else {}
    in_dispatch = (doc is not None and internal.get("phase") == JobPhase.QUEUED
                   and int(internal.get("attempt") or 1) == asg.attempt)
    if not assignments.holds(doc, asg) and not in_dispatch:
        if assignments.release(settings, cluster_key, job_key, asg.assignment_id, now):
            result.released.append(job_key)
    elif not asg.dispatched and now - asg.created_at >= REDISPATCH_AFTER:
        assignments.dispatch(settings, asg, now)
        result.redispatched.append(job_key)
    elif asg.dispatched and internal.get("phase") in HANDED_PHASES:
        dispatched_at = datetime.fromisoformat(entity["dispatchedAt"]) if entity.get("dispatchedAt") \
            else asg.created_at
        unreported = [node for index, node in enumerate(asg.node_ids) if str(index) not in asg.tasks]
        unlisted = handovers.unlisted(unreported, asg.assignment_id, dispatched_at, beats, REHAND_AFTER)
        if unlisted:  # a job being stopped gets the stop again: a node that ended its task reports the end
            assignments.send_again(settings, asg, unlisted, now, stop=internal["phase"] == JobPhase.TERMINATING)
            result.rehanded.append(job_key)


def _stop_strays(settings: Settings, node_id: str, stray: list[str], result: SafetyResult) -> None:
    for assignment_id in stray:
        assignments.send_stop(settings, [node_id], assignment_id, "requeue")
        result.stopped_strays.append(assignment_id)


def _repair_pending(settings: Settings, snap: Snapshot, queued_keys: set[str], job_key: str, row: Row,
                    result: SafetyResult) -> None:
    if job_key in queued_keys:
        return  # queued in the query, which came before the snapshot: its pending row stands
    doc = job_state.get(settings, JobRef.from_key(job_key))  # read again: the query may be old
    if doc is None or (doc.data.get("internal") or {}).get("phase") != JobPhase.QUEUED:
        _drop_pending(settings, row)
        result.dropped_pending.append(job_key)
        del snap.pending[job_key]


def _reindex(settings: Settings, cluster_key: str, snap: Snapshot, doc: Any, result: SafetyResult) -> None:
    job_key = JobRef.from_key(f"{doc.pk}|{doc.rk}").key
    if job_key in snap.pending or job_key in snap.asgs:
        return
    fresh = job_state.get(settings, JobRef.from_key(job_key))  # read again: the query may be old
    if fresh is None or (fresh.data.get("internal") or {}).get("phase") != JobPhase.QUEUED:
        return
    if not job_links.indexable(fresh.data):
        return  # an array parent, or a job waiting on its dependencies: never pending
    if assignments.get(settings, cluster_key, job_key) is not None:
        return
    add_pending_for(settings, cluster_key, job_key, fresh.data)
    snap.pending[job_key] = {}
    result.readded.append(job_key)


def _drop_pending(settings: Settings, row: Row) -> None:
    """Delete the pending row as read (If-Match): one that changed or is gone since is left alone."""
    with contextlib.suppress(StaleEtag):
        assignments.sched(settings).write(Delete(row["PartitionKey"], row["RowKey"], row.etag))
