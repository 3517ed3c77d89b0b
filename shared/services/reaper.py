"""The reaper: what no event will ever report. Nodes whose heartbeat stopped are lost (their job
requeued counting a retry, their instance removed, their row and heartbeat blob deleted: the
reconciler replaces them if the target says so); nodes stuck starting or preparing past the start timeout are
unusable (kept with the error so the user sees why; scaling removes them); jobs past
`constraints.maxWallClockTime` that their agent did not stop are terminated with reason walltime.
Decisions are `decisions.node_plan`'s; node rows are written through `services.node_state`. A node's last
beat is the storage server's Last-Modified of its heartbeat blob (`storage.heartbeat_blob`): one
listing per cluster, and no trust in the node's clock.

`Watch` is the timer's memory between ticks in one process: silence is only evidence while the
reaper was looking. After a tick that could not read storage (an outage silences the nodes too), a
gap longer than a heartbeat timeout (a suspended host, missed ticks) or a process start, every node
gets a whole timeout from then before it is taken as lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import ports
from shared.adapters import sched_store, storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.decisions import node_plan
from shared.decisions.handovers import Beat
from shared.decisions.node_plan import NodeHealth
from shared.domain.keys import JobRef
from shared.services import node_state, nodes
from shared.services.cluster_reconcile import partitions_with
from shared.services.guarded import each

RUNNING_PHASES = ("assigned", "running")


@dataclass
class ReapResult:
    cluster_key: str
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    walltime: list[str] = field(default_factory=list)  # job keys terminated


def reap_cluster(settings: Settings, cluster_key: str, now: datetime,
                 watching_since: datetime | None = None) -> ReapResult:
    conn = settings.storage_connection_string
    rows = sched_store.partition(conn, cluster_key)
    health = [_health(r) for r in nodes.node_rows(rows)]
    plan = node_plan.reap_plan(health, heartbeats(conn, cluster_key), now, settings.heartbeat_timeout_s,
                               settings.node_start_timeout_s, watching_since)
    result = ReapResult(cluster_key)
    spec = nodes.cluster_spec(cluster_key, nodes.load_cluster(settings, cluster_key)) if (plan.lost or plan.stuck) \
        else None
    for lost in plan.lost:
        _lose(settings, cluster_key, lost, now, spec)
        result.lost.append(lost.node.node_id)
    for node in plan.stuck:
        _mark_stuck(settings, cluster_key, node, now)
        result.stuck.append(node.node_id)
    for row in rows:
        if row["RowKey"].startswith(sched_store.ASSIGNMENT) and _past_wall_clock(settings, row, now):
            nodes.terminate(settings, row["jobKey"], "walltime")
            result.walltime.append(row["jobKey"])
    return result


def reap_all(settings: Settings, now: datetime, watching_since: datetime | None = None) -> list[ReapResult]:
    """Reap every cluster with node or assignment rows (live work only); one cluster's failure never
    stops the others (the failures are raised together at the end)."""
    return reap_clusters(settings, live_clusters(settings), now, watching_since)


def live_clusters(settings: Settings) -> list[str]:
    keys = partitions_with(settings, sched_store.NODE) | partitions_with(settings, sched_store.ASSIGNMENT)
    return sorted(keys)


def reap_clusters(settings: Settings, keys: list[str], now: datetime,
                  watching_since: datetime | None) -> list[ReapResult]:
    return each(keys, lambda key: reap_cluster(settings, key, now, watching_since), "reaping the cluster")


class Watch:
    """The reaper timer's watch in this process (see the module docstring); `tick` is one timer tick."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.since: datetime | None = None
        self.last_end: datetime | None = None

    def tick(self, settings: Settings) -> list[ReapResult]:
        now = self.clock()
        since = node_plan.reaper_watch_since(self.since, self.last_end, now, settings.heartbeat_timeout_s)
        try:
            keys = live_clusters(settings)
        except Exception:
            self.since = None  # blind: what the nodes could not report in the meantime proves nothing
            raise
        self.since = since
        try:
            return reap_clusters(settings, keys, now, since)
        finally:
            self.last_end = self.clock()


def heartbeats(conn: str, cluster_key: str) -> dict[str, datetime]:
    """{node id: time of its last heartbeat} of a cluster, from its heartbeat blobs."""
    return {node: beat.at for node, beat in beats(conn, cluster_key).items()}


def beats(conn: str, cluster_key: str) -> dict[str, Beat]:
    """{node id: its last heartbeat (time, running assignments)} of a cluster: one listing."""
    prefix = storage.heartbeat_prefix(cluster_key)
    blobs = ports.of(conn).blobs.list(storage.C_HEARTBEATS, prefix, metadata=True)
    return {blob.name[len(prefix):]: Beat(blob.last_modified, frozenset(
        a for a in (blob.metadata.get("assignments") or "").split(",") if a)) for blob in blobs}


def delete_heartbeat(conn: str, cluster_key: str, node_id: str) -> None:
    """A node's heartbeat blob (no error when it never beat or is deleted already)."""
    ports.of(conn).blobs.delete(storage.C_HEARTBEATS, storage.heartbeat_blob(cluster_key, node_id))


def _health(row: Mapping[str, Any]) -> NodeHealth:
    return NodeHealth(node_id=nodes.node_id_of(row), state=row["state"],
                      state_since=nodes.parse_time(row.get("stateSince")),
                      registered_at=nodes.parse_time(row.get("registeredAt")),
                      job_key=row.get("jobKey") or "", assignment_id=row.get("assignmentId") or "")


def _lose(settings: Settings, key: str, lost: node_plan.Lost, now: datetime, spec: Any) -> None:
    node_id = lost.node.node_id
    since = lost.last_seen.isoformat() if lost.last_seen else "it registered"
    reason = f"node {node_id} lost: no heartbeat since {since}"
    row = node_state.lose(settings, key, node_id, reason, now, unless=("lost", "starting"))
    if row is None or row["state"] != "lost":
        return
    nodes.requeue_all(settings, row, reason, count_retry=True)
    nodes.remove_instances(settings, spec, [node_id])
    node_state.delete(settings, key, node_id)
    delete_heartbeat(settings.storage_connection_string, key, node_id)


def _mark_stuck(settings: Settings, key: str, node: NodeHealth, now: datetime) -> None:
    message = (f"node {node.node_id} did not become ready within {settings.node_start_timeout_s:g} s "
               f"(still {node.state})")
    node_state.make_unusable(settings, key, node.node_id, "start timeout",
                             {"code": "NodeStartTimeout", "message": message}, now, only_from={node.state},
                             since=node.state_since.isoformat() if node.state_since else None)


def _past_wall_clock(settings: Settings, asg: Mapping[str, Any], now: datetime) -> bool:
    job_key = asg.get("jobKey")
    if not job_key:
        return False
    ref = JobRef.from_key(job_key)
    doc = ResourceStore(settings.storage_connection_string, storage.T_JOBS).get(ref.experiment.job_pk,
                                                                                ref.name.lower())
    if doc is None:
        return False
    internal = doc.data.get("internal") or {}
    if internal.get("phase") not in RUNNING_PHASES:
        return False
    limit = node_plan.parse_wall_clock(((doc.data.get("properties") or {}).get("constraints") or {})
                                       .get("maxWallClockTime"))
    started = nodes.parse_time((internal.get("executionInfo") or {}).get("startTime") or asg.get("createdAt"))
    return node_plan.past_wall_clock(started, limit, now, grace_s=settings.heartbeat_timeout_s)
