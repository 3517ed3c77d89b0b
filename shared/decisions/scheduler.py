"""The scheduler: which pending jobs get which nodes of one cluster. Pure: request in, reply out.

`schedule(SchedulingRequest) -> SchedulingReply` reads a snapshot of one cluster (its packing
option, its nodes, its pending jobs, the time and the ids to give new assignments) and returns
the assignments to commit. It does no I/O, reads no clock and makes no ids.

Policy, in named steps:
- `_order`: pending jobs by schedulingPriority (high, normal, low), then submit time, then key.
- Gang: a job that needs N nodes gets N distinct nodes at once, or nothing.
- Packing `whole-node` (the default, Batch AI semantics): a node runs one job at a time; only an
  `idle` node with no job is free. Packing `gpu-slots` (cluster option `internal.packing`): a
  node offers its GPUs (its cores when it has none) as slots; a job takes `slots` slots on each
  of its N nodes; `idle` and `running` nodes with enough free slots are free. Nodes that are
  starting, preparing, leaving, unusable or lost are never free.
- GPU indices (`gpu_slots.devices_for`): each placement names, per node, the GPU indices its task
  gets: the lowest ones no job on the node holds (gpu-slots), or all of them (whole-node).
- Head of line (`_reserve`): a job that cannot be placed now but could be placed once running
  jobs end (its N nodes exist among the cluster's idle, running, starting and preparing nodes)
  reserves the N nodes it will take first: free nodes before busy ones. Jobs behind it may only
  backfill onto nodes outside every reservation, so a backfilled job never holds a node a
  higher-ranked job waits for. With whole-node packing every free node ends up reserved by the
  first blocked job, so nothing jumps it. A job larger than the whole cluster reserves nothing
  (waiting for running jobs cannot help it; the autoscaler must) and is reported `too-large`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from shared.decisions.gpu_slots import GPU_SLOTS, PACKINGS, WHOLE_NODE, devices_for

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}

#: Node states whose nodes will take jobs (now, or once their jobs end or they finish joining).
CAPACITY_STATES = frozenset({"idle", "running", "starting", "preparing"})


@dataclass(frozen=True)
class NodeView:
    node_id: str
    state: str
    slots: int = 1  # GPUs, or cores when the node has no GPU (gpu-slots packing only)
    used_slots: int = 0
    jobs: tuple[str, ...] = ()  # job keys running on it
    gpus: int = 0  # its GPUs, indices 0..gpus-1
    busy_gpus: frozenset[int] = frozenset()  # the indices its jobs hold


@dataclass(frozen=True)
class PendingJob:
    job_key: str
    priority: str
    submitted_at: datetime
    node_count: int = 1
    attempt: int = 1
    slots: int = 1  # slots per node under gpu-slots packing


@dataclass(frozen=True)
class SchedulingRequest:
    nodes: Sequence[NodeView]
    pending: Sequence[PendingJob]
    now: datetime
    new_ids: Sequence[str]  # assignment ids to use, in order; no more assignments than ids
    packing: str = WHOLE_NODE


@dataclass(frozen=True)
class Placement:
    job_key: str
    assignment_id: str
    node_ids: tuple[str, ...]  # rank order; node_ids[0] is the master
    attempt: int
    slots: int  # slots taken on each node (1 under whole-node packing)
    gpus: tuple[tuple[int, ...], ...] = ()  # the GPU indices taken on each node, in node_ids order

    @cached_property
    def _gpus_by_node(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self.node_ids, self.gpus, strict=False))

    def gpus_on(self, node_id: str) -> tuple[int, ...]:
        return self._gpus_by_node.get(node_id, ())


@dataclass(frozen=True)
class Waiting:
    job_key: str
    reason: str  # "no-free-nodes" | "behind-reservation" | "too-large" | "no-ids"
    reserved: tuple[str, ...] = ()  # nodes held for it (head of line)


@dataclass
class SchedulingReply:
    assignments: list[Placement] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


@dataclass
class _Node:
    view: NodeView
    free_slots: int
    reserved: bool = False
    busy_gpus: set[int] = field(default_factory=set)

    @property
    def busy(self) -> bool:
        return bool(self.view.jobs) or self.view.state != "idle"


def schedule(request: SchedulingRequest) -> SchedulingReply:
    if request.packing not in PACKINGS:
        raise ValueError(f"unknown packing {request.packing!r}")
    nodes = [_Node(n, _free(n), busy_gpus=set(n.busy_gpus)) for n in sorted(request.nodes, key=lambda n: n.node_id)
             if n.state in CAPACITY_STATES]
    ids = list(request.new_ids)
    reply = SchedulingReply()
    for job in _order(request.pending):
        need = _slots(job, request.packing)
        fits = _free_nodes(nodes, need, request.packing)
        if len(fits) >= job.node_count:
            if not ids:
                reply.waiting.append(Waiting(job.job_key, "no-ids"))
                continue
            chosen = fits[:job.node_count]
            devices = []
            for node in chosen:
                node.free_slots = node.free_slots - need if request.packing == GPU_SLOTS else 0
                devices.append(devices_for(request.packing, node.view.gpus, node.busy_gpus, need))
                node.busy_gpus |= set(devices[-1])
            reply.assignments.append(Placement(job.job_key, ids.pop(0), tuple(n.view.node_id for n in chosen),
                                               job.attempt, need, tuple(devices)))
            continue
        reply.waiting.append(_reserve(nodes, job, need, request.packing))
    return reply


def _free(view: NodeView, taken: int = 0) -> int:
    """Free slots: what its jobs leave; on a node with GPUs, no more than the GPU indices left."""
    free = view.slots - view.used_slots - taken
    if view.gpus > 0:
        free = min(free, view.gpus - len({i for i in view.busy_gpus if 0 <= i < view.gpus}) - taken)
    return max(free, 0)


def _order(pending: Sequence[PendingJob]) -> list[PendingJob]:
    seen: set[str] = set()
    ordered = []
    for job in sorted(pending, key=lambda j: (PRIORITY_RANK.get(j.priority, 1), j.submitted_at, j.job_key)):
        if job.job_key not in seen and job.node_count >= 1:
            seen.add(job.job_key)
            ordered.append(job)
    return ordered


def _slots(job: PendingJob, packing: str) -> int:
    return max(job.slots, 1) if packing == GPU_SLOTS else 1


def _schedulable_now(node: _Node, need: int, packing: str) -> bool:
    if node.reserved:
        return False
    if packing == WHOLE_NODE:
        return node.view.state == "idle" and not node.view.jobs and node.free_slots >= 1
    return node.view.state in ("idle", "running") and node.free_slots >= need


def _free_nodes(nodes: list[_Node], need: int, packing: str) -> list[_Node]:
    free = [n for n in nodes if _schedulable_now(n, need, packing)]
    if packing == GPU_SLOTS:
        # Best fit: the fullest nodes first, so large free blocks stay whole for larger jobs.
        free.sort(key=lambda n: (n.free_slots, n.view.node_id))
    return free


def _reserve(nodes: list[_Node], job: PendingJob, need: int, packing: str) -> Waiting:
    """Hold for a blocked job the nodes it will take first, so later jobs cannot delay it."""
    capacity = [n for n in nodes if n.view.slots >= need or packing == WHOLE_NODE]
    if len(capacity) < job.node_count:
        return Waiting(job.job_key, "too-large")
    open_nodes = [n for n in capacity if not n.reserved]
    if len(open_nodes) < job.node_count:
        return Waiting(job.job_key, "behind-reservation")
    # Free nodes first, then busy ones (under packing: most free slots first); ties by id.
    open_nodes.sort(key=lambda n: (n.busy, -n.free_slots if packing == GPU_SLOTS else 0, n.view.node_id))
    held = open_nodes[:job.node_count]
    for node in held:
        node.reserved = True
    return Waiting(job.job_key, "no-free-nodes", tuple(n.view.node_id for n in held))


def saturated(request: SchedulingRequest, reply: SchedulingReply) -> bool:
    """After `reply`, can no further pending job be placed? True when every node that could take a
    job now is taken by the reply or held for a waiting job. Jobs ranked after `request.pending`
    then only wait, so a caller that read just the first pending jobs (in `_order`'s order) has
    the same placements as with all of them."""
    taken: dict[str, int] = {}
    for placement in reply.assignments:
        for node_id in placement.node_ids:
            taken[node_id] = taken.get(node_id, 0) + placement.slots
    reserved = {node_id for w in reply.waiting for node_id in w.reserved}
    for view in request.nodes:
        if view.state not in CAPACITY_STATES or view.node_id in reserved:
            continue
        node = _Node(view, _free(view, taken.get(view.node_id, 0)))
        if request.packing == WHOLE_NODE and view.node_id in taken:
            continue
        if _schedulable_now(node, 1, request.packing):
            return False
    return True
