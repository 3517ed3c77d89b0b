"""The cluster reconciler (and with it the autoscaler): every tick rebuilds the observed state of
each cluster (its document, node rows, pending demand, provider instances), asks the pure
`decisions.autoscaler` for the difference and applies it. It owns the cluster document's
`internal.allocationState`, `internal.allocationStateTransitionTime`, `internal.scaleInitialized`
and `internal.errors` (the provider's refusal of the cluster: bad VM size, quota, subnet), and the
fate of nodes being scaled away; when a cluster document is gone it removes its nodes.

Apply order keeps the scheduler away from nodes on their way out: a row is marked leaving (or
lost) with its ETag first, then its job is requeued or terminated through the job services, then
the instance is removed; rows are deleted once their instance is gone. Provider calls start work
and return; nothing here waits for a node.

Providers with `ScaleInProtection` (vmss) get busy nodes protected and idle ones released; the
row's `scaleInProtected` records what was set, so only a change between idle and running costs a
call. Providers that run each job as its own container group (`TaskRunner`, aci) have no nodes to
drive: their jobs are `aci_jobs`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import ports, telemetry
from shared.adapters import sched_store, storage
from shared.adapters.compute import provider_for, vm_sizes
from shared.adapters.compute.byo import ByoProvider
from shared.adapters.compute.capabilities import ComputeRejected, ScaleInProtection, TaskRunner
from shared.adapters.compute.port import ComputeProvider
from shared.adapters.resource_store import Doc, ResourceStore, StaleEtag
from shared.config import Settings
from shared.dashboard import cluster_history
from shared.decisions import autoscaler, gpu_slots
from shared.decisions.autoscaler import Drain, InstanceView, NodeView, ScaleInput, ScalePolicy
from shared.domain.keys import ClusterRef
from shared.domain.states import NodeState
from shared.ports.rows import Query, prefix_range
from shared.services import node_state, nodes, removal
from shared.services.guarded import each
from shared.services.scheduling import packing_of

ACTIVE = ("creating", "running")
#: Most instances one tick may start, per provider: a local instance is a process started during
#: the tick, so a huge target must not start processes in a loop (the next tick starts more).
MAX_STARTS_PER_TICK = {"local": 8}


@dataclass
class ReconcileResult:
    cluster_key: str
    deleted: bool = False  # the cluster document is gone: its nodes are being removed
    wanted: int = 0
    provider_target: int = 0
    removed: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # rows of vanished instances
    allocation_state: str = autoscaler.STEADY
    protected: dict[str, bool] = field(default_factory=dict)  # node id -> scale-in protection set this tick
    rejected: dict[str, str] | None = None  # the provider's refusal this tick ({code, message})


def reconcile_cluster(settings: Settings, cluster: ClusterRef | str, now: datetime,
                      provider: ComputeProvider | None = None) -> ReconcileResult:
    key = cluster.key if isinstance(cluster, ClusterRef) else cluster
    doc = nodes.load_cluster(settings, key)
    if doc is None or (doc.data.get("internal") or {}).get("deletingSince"):
        return remove_cluster(settings, key, provider)  # deleted, or being deleted: it grows no more
    spec = nodes.cluster_spec(key, doc)
    provider = provider or provider_for(settings, spec)
    if isinstance(provider, TaskRunner):
        provider.reconcile(spec, 0)  # no standing nodes: each job is a container group (`aci_jobs`)
        return ReconcileResult(key)
    rows = sched_store.partition(settings.storage_connection_string, key)
    node_rows = nodes.node_rows(rows)
    pending_rows = [r for r in rows if r["RowKey"].startswith(sched_store.PENDING)]
    pending = [int(r.get("nodeCount") or 1) for r in pending_rows]
    instances = provider.list_instances(key)
    internal = doc.data.get("internal") or {}
    decision = autoscaler.decide(ScaleInput(
        policy=ScalePolicy.from_properties(doc.data.get("properties") or {}),
        nodes=[_view(r) for r in node_rows], instances=[InstanceView(i.node_id, i.state) for i in instances],
        pending_node_counts=pending, now=now, idle_timeout_s=settings.idle_timeout_s,
        first_reconcile=not internal.get("scaleInitialized"), max_starts=MAX_STARTS_PER_TICK.get(provider.name),
        packing=packing_of(doc), pending_slots=[int(r.get("slots") or 1) for r in pending_rows],
        node_slots=_node_slots(node_rows, spec.vm_size)))
    result = ReconcileResult(key, wanted=decision.wanted, provider_target=decision.provider_target,
                             allocation_state=decision.allocation_state)
    cluster_history.record(settings, key, now, node_rows, pending, decision.wanted)  # the dashboard's chart
    _measure(key, node_rows, len(pending))

    details = {i.node_id: i.detail for i in instances}
    for node_id in decision.start_failed:
        _mark_start_failed(settings, key, node_id, details.get(node_id, ""), now)
    for view in decision.gone:
        _drop_gone(settings, key, view, now, "its instance is gone")
        result.dropped.append(view.node_id)
    for view in decision.lost:
        _drop_gone(settings, key, view, now, f"the provider reports its instance failed: {details.get(view.node_id)}")
        result.dropped.append(view.node_id)
    remove = set(decision.remove)
    for drain in decision.drain:
        if not _drain(settings, key, drain, now) and drain.node_id in remove:
            remove.discard(drain.node_id)  # it changed meanwhile (e.g. got a job): decide again next tick
    result.removed = sorted(remove)
    try:
        provider.reconcile(spec, decision.provider_target, remove=result.removed)
    except ComputeRejected as err:  # permanent: the cluster shows why it does not grow
        result.rejected = {"code": err.code, "message": err.message}
        result.allocation_state = autoscaler.STEADY
    if isinstance(provider, ScaleInProtection):
        result.protected = _protect_busy(settings, key, provider, node_rows, remove)
    result.adopted = _adopt(settings, key, provider, now)
    _write_allocation(settings, doc, result.allocation_state, now, result.rejected)
    return result


def _measure(key: str, node_rows: list[Mapping[str, Any]], pending: int) -> None:
    telemetry.gauge("batchai.cluster.pending_jobs", pending, description="Jobs waiting for nodes.",
                    **{"batchai.cluster": key})
    states = Counter(str(r["state"]) for r in node_rows)
    for state in sorted(set(states) | {s.value for s in NodeState}):
        telemetry.gauge("batchai.cluster.nodes", states.get(state, 0), description="Nodes of a cluster by state.",
                        **{"batchai.cluster": key, "batchai.node.state": state})


def tick(settings: Settings, now: datetime) -> None:
    """One reconcile tick: the deletions in flight advance first (a cluster deleted this tick loses
    its nodes in the same tick), then every cluster; a failure of either does not stop the other."""
    each([removal.reconcile_all, reconcile_all], lambda step: step(settings, now), "reconcile step")


def reconcile_all(settings: Settings, now: datetime) -> list[ReconcileResult]:
    """Reconcile every cluster that has a document, node rows or local instances. A failure of one
    cluster does not stop the others; the failures are raised together at the end."""
    return each(sorted(cluster_keys(settings)), lambda key: reconcile_cluster(settings, key, now),
                "reconciling the cluster")


def cluster_keys(settings: Settings) -> set[str]:
    conn = settings.storage_connection_string
    keys = {f"{d.pk}|{d.rk}" for d in ResourceStore(conn, storage.T_CLUSTERS).scan()}
    # Partitions of deleted clusters too: their nodes are removed and the jobs still indexed there stopped.
    for prefix in (sched_store.NODE, sched_store.PENDING, sched_store.ASSIGNMENT):
        keys |= partitions_with(settings, prefix)
    provider = provider_for(settings, None)
    listed = getattr(provider, "clusters", None)
    if callable(listed):
        keys |= set(listed())
    return keys


def partitions_with(settings: Settings, row_prefix: str) -> set[str]:
    """The sched partitions (cluster keys) holding at least one row whose key starts with the prefix."""
    table = ports.of(settings.storage_connection_string).table(storage.T_SCHED)
    return {row["PartitionKey"] for row in table.query(Query(rk_range=prefix_range(row_prefix), select=()))}


def remove_cluster(settings: Settings, key: str, provider: ComputeProvider | None = None) -> ReconcileResult:
    """The cluster document is gone (or being deleted): stop its jobs, delete its instances, then its
    node rows."""
    provider = provider or provider_for(settings, None)
    rows = sched_store.partition(settings.storage_connection_string, key)
    removal.terminate_cluster_jobs(settings, key)
    provider.delete_cluster(key)
    ByoProvider(settings.storage_connection_string).delete_cluster(key)  # its join tokens, if it was one
    alive = {i.node_id for i in provider.list_instances(key)}
    for row in nodes.node_rows(rows):
        node_id = nodes.node_id_of(row)
        if node_id not in alive and node_state.delete(settings, key, node_id):
            # No error when it never beat, or is deleted already.
            ports.of(settings.storage_connection_string).blobs.delete(storage.C_HEARTBEATS,
                                                                      storage.heartbeat_blob(key, node_id))
    return ReconcileResult(key, deleted=True)


# --- applying one decision --------------------------------------------------------------------

def _slots(row: Mapping[str, Any]) -> int:
    return gpu_slots.node_slots(int(row.get("gpus") or 0), int(row.get("cores") or 0))


def _node_slots(node_rows: list[Mapping[str, Any]], vm_size: str) -> int:
    """The slots a new node will offer: as the registered nodes report (their GPUs, else cores), else
    as the VM size has (its GPUs, else its cores)."""
    registered = [_slots(r) for r in node_rows if r.get("registeredAt")]
    if registered:
        return max(registered)
    return gpu_slots.node_slots(vm_sizes.gpu_count(vm_size), vm_sizes.size_info(vm_size).cores)


def _view(row: Mapping[str, Any]) -> NodeView:
    used = sum(int(j.get("slots") or 1) for j in node_state.node_jobs(row).values())
    return NodeView(node_id=nodes.node_id_of(row), state=row["state"], job_key=row.get("jobKey") or "",
                    assignment_id=row.get("assignmentId") or "", idle_since=nodes.parse_time(row.get("idleSince")),
                    state_since=nodes.parse_time(row.get("stateSince")), leaving_reason=row.get("leavingReason") or "",
                    free_slots=max(_slots(row) - used, 0))


def _mark_start_failed(settings: Settings, key: str, node_id: str, detail: str, now: datetime) -> None:
    error = {"code": "NodeStartFailed", "message": f"node {node_id} failed to start: {detail}"}
    node_state.make_unusable(settings, key, node_id, "the node agent exited before it was ready", error, now,
                             only_from={"starting", "preparing"})


def _drop_gone(settings: Settings, key: str, view: NodeView, now: datetime, why: str) -> None:
    """The instance vanished or died: the row becomes lost (so no pass assigns it), its job is
    requeued, the row deleted."""
    if view.state not in ("leaving", "lost") or view.job_key:
        row = node_state.lose(settings, key, view.node_id, why, now)
        nodes.requeue_all(settings, row, f"node {view.node_id} lost: {why}", count_retry=True)
    node_state.delete(settings, key, view.node_id)


def _drain(settings: Settings, key: str, drain: Drain, now: datetime) -> bool:
    """Mark the node leaving (only if it is still as decided), then stop its job per the option.
    False when the node changed since the snapshot."""
    reason = f"scale-down:{drain.action}" if drain.action else "scale-down"
    row = node_state.make_leaving(settings, key, drain.node_id, reason, now, drain.job_key, busy=bool(drain.action))
    if row is None:
        return True  # an instance with no row yet: nothing to mark
    if row["state"] != "leaving":
        return False
    why = f"node {drain.node_id} removed by a cluster scale-down (nodeDeallocationOption {drain.action})"
    if drain.action == autoscaler.REQUEUE:
        nodes.requeue_all(settings, row, why, count_retry=False)
    elif drain.action == autoscaler.TERMINATE:
        for job_key in node_state.held_jobs(row):
            nodes.terminate(settings, job_key, why)
    return True


def _protect_busy(settings: Settings, key: str, provider: ScaleInProtection, node_rows: list[Mapping[str, Any]],
                  removing: set[str]) -> dict[str, bool]:
    """Keep scale-in protection in step with each node's busy-ness. A row's `scaleInProtected`
    records what was last set, so only nodes that changed between idle and running cost a call."""
    changed: dict[str, bool] = {}
    for row in node_rows:
        node_id = node_state.node_id_of(row)
        busy = row["state"] == "running"
        if node_id in removing or row["state"] not in ("idle", "running") \
                or bool(row.get("scaleInProtected")) == busy:
            continue
        provider.protect(key, [node_id], busy=busy)
        node_state.record_protection(settings, key, node_id, busy)
        changed[node_id] = busy
    return changed


def _adopt(settings: Settings, key: str, provider: ComputeProvider, now: datetime) -> list[str]:
    """Record a starting row for every active instance that has none (new instances included)."""
    return [i.node_id for i in provider.list_instances(key)
            if i.state in ACTIVE and node_state.adopt(settings, key, i.node_id, i.address, now,
                                                      (i.login_address, i.login_port) if i.login_port else None)]


def _write_allocation(settings: Settings, doc: Doc, state: str, now: datetime,
                      rejected: dict[str, str] | None) -> None:
    """The allocation state, and the provider's refusal as the cluster's `errors` (cleared once the
    provider accepts the cluster again)."""
    store = ResourceStore(settings.storage_connection_string, storage.T_CLUSTERS)
    errors = [rejected] if rejected else []
    current: Doc | None = doc
    for _ in range(node_state.ATTEMPTS):
        if current is None:
            return  # deleted meanwhile
        internal = dict(current.data.get("internal") or {})
        if internal.get("allocationState") == state and internal.get("scaleInitialized") \
                and (internal.get("errors") or []) == errors:
            return
        if internal.get("allocationState") != state:
            internal["allocationState"] = state
            internal["allocationStateTransitionTime"] = now.isoformat()
        internal["scaleInitialized"] = True
        internal["errors"] = errors
        try:
            store.replace(current, {**current.data, "internal": internal})
            return
        except StaleEtag:
            current = store.get(doc.pk, doc.rk)
    raise node_state.ConcurrentUpdates(f"cluster document {doc.pk}/{doc.rk} kept changing")
