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
- Head of line (`reserve`): a job that cannot be placed now but could be placed once running
  jobs end (its N nodes exist among the cluster's idle, running, starting and preparing nodes)
  reserves the N nodes it will take first: free nodes before busy ones. Jobs behind it may only
  backfill onto nodes outside every reservation, so a backfilled job never holds a node a
  higher-ranked job waits for. With whole-node packing every free node ends up reserved by the
  first blocked job, so nothing jumps it. A job larger than the whole cluster reserves nothing
  (waiting for running jobs cannot help it; the autoscaler must) and is reported `too-large`.

The policy is stated plainly in tests/scheduling/reference_scheduler.py (one scan of the nodes per
job); here the free and unreserved nodes are kept in queues (whole-node) or buckets (gpu-slots), so
a pass over 1,000 nodes and 10,000 pending jobs takes tens of milliseconds (`bench/scheduler.py`),
and a property test holds both to the same decisions.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import islice
from operator import attrgetter

from shared.decisions.gpu_slots import GPU_SLOTS, PACKINGS, WHOLE_NODE, devices_for

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}

_BY_TIME_AND_KEY = attrgetter("submitted_at", "job_key")

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
    pool: _WholeNodes | _SlotNodes = _WholeNodes(nodes) if request.packing == WHOLE_NODE else _SlotNodes(nodes)
    ids = deque(request.new_ids)
    reply = SchedulingReply()
    for job in _order(request.pending):
        need = _slots(job, request.packing)
        if not pool.open_count:  # every node is held for a job ranked higher: the rest can only wait
            too_large = pool.capacity(need) < job.node_count
            reply.waiting.append(Waiting(job.job_key, "too-large" if too_large else "behind-reservation"))
            continue
        if not pool.fits(job.node_count, need):
            reply.waiting.append(pool.reserve(job, need))
            continue
        if not ids:
            reply.waiting.append(Waiting(job.job_key, "no-ids"))
            continue
        chosen = pool.take(job.node_count, need)
        devices = []
        for node in chosen:
            devices.append(devices_for(request.packing, node.view.gpus, node.busy_gpus, need))
            node.busy_gpus |= set(devices[-1])
        reply.assignments.append(Placement(job.job_key, ids.popleft(), tuple(n.view.node_id for n in chosen),
                                           job.attempt, need, tuple(devices)))
    return reply


class _WholeNodes:
    """Whole-node packing in queues, so a pass costs O(jobs + nodes), not O(jobs x nodes): the free
    nodes in id order, and the unreserved nodes (free ones first, then busy ones, each in id order).
    Both are consumed from the front only; a node reserved or taken since it was queued is skipped."""

    def __init__(self, nodes: list[_Node]) -> None:
        self.size = len(nodes)
        self.free = deque(n for n in nodes if _schedulable_now(n, 1, WHOLE_NODE))
        self.free_count = len(self.free)
        self.open = (deque(n for n in nodes if not n.busy), deque(n for n in nodes if n.busy))
        self.open_count = self.size

    def capacity(self, need: int) -> int:
        return self.size

    def fits(self, count: int, need: int) -> bool:
        return self.free_count >= count

    def take(self, count: int, need: int) -> list[_Node]:
        chosen: list[_Node] = []
        while len(chosen) < count:
            node = self.free.popleft()
            if not node.reserved:
                node.free_slots = 0
                chosen.append(node)
        self.free_count -= count
        return chosen

    def reserve(self, job: PendingJob, need: int) -> Waiting:
        if self.size < job.node_count:
            return Waiting(job.job_key, "too-large")
        if self.open_count < job.node_count:
            return Waiting(job.job_key, "behind-reservation")
        held: list[_Node] = []
        for queue in self.open:
            while queue and len(held) < job.node_count:
                held.append(queue.popleft())
        for node in held:
            if _schedulable_now(node, 1, WHOLE_NODE):
                self.free_count -= 1
            node.reserved = True
        self.open_count -= len(held)
        return Waiting(job.job_key, "no-free-nodes", tuple(n.view.node_id for n in held))


class _Buckets:
    """Nodes grouped by a sort key, each group in id order: walked in (key, id) order."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, ...], list[str]] = {}

    def add(self, key: tuple[int, ...], node_id: str) -> None:
        insort(self.groups.setdefault(key, []), node_id)

    def remove(self, key: tuple[int, ...], node_id: str) -> None:
        group = self.groups[key]
        del group[bisect_left(group, node_id)]
        if not group:
            del self.groups[key]

    def walk(self, start: tuple[int, ...] = ()) -> Iterator[str]:
        for key in sorted(k for k in self.groups if k >= start):
            yield from self.groups[key]


class _SlotNodes:
    """GPU-slot packing in buckets, so a pass costs about O(jobs + placements x nodes per bucket): the
    free nodes by free slots (best fit: the fullest first), the unreserved nodes by (busy, most free
    slots first), and the slot sizes of the unreserved nodes (how many could ever take a job)."""

    def __init__(self, nodes: list[_Node]) -> None:
        self.by_id = {n.view.node_id: n for n in nodes}
        self.sizes = sorted(n.view.slots for n in nodes)
        self.open_sizes = list(self.sizes)
        self.open_count = len(nodes)
        self.free, self.open = _Buckets(), _Buckets()
        for node in nodes:
            self._file(node)
        self._fits: list[_Node] = []

    def _free_key(self, node: _Node) -> tuple[int, ...] | None:
        takes_jobs = not node.reserved and node.view.state in ("idle", "running") and node.free_slots >= 1
        return (node.free_slots,) if takes_jobs else None

    def _file(self, node: _Node) -> None:
        if (key := self._free_key(node)) is not None:
            self.free.add(key, node.view.node_id)
        if not node.reserved:
            self.open.add((int(node.busy), -node.free_slots), node.view.node_id)

    def _unfile(self, node: _Node) -> None:
        if (key := self._free_key(node)) is not None:
            self.free.remove(key, node.view.node_id)
        if not node.reserved:
            self.open.remove((int(node.busy), -node.free_slots), node.view.node_id)

    def capacity(self, need: int) -> int:
        return len(self.sizes) - bisect_left(self.sizes, need)

    def fits(self, count: int, need: int) -> bool:
        self._fits = [self.by_id[i] for i in islice(self.free.walk((need,)), count)]
        return len(self._fits) >= count

    def take(self, count: int, need: int) -> list[_Node]:
        for node in self._fits:
            self._unfile(node)
            node.free_slots -= need
            self._file(node)
        return self._fits

    def reserve(self, job: PendingJob, need: int) -> Waiting:
        if self.capacity(need) < job.node_count:
            return Waiting(job.job_key, "too-large")
        if len(self.open_sizes) - bisect_left(self.open_sizes, need) < job.node_count:
            return Waiting(job.job_key, "behind-reservation")
        held = list(islice((n for n in map(self.by_id.__getitem__, self.open.walk()) if n.view.slots >= need),
                           job.node_count))
        for node in held:
            self._unfile(node)
            node.reserved = True
            del self.open_sizes[bisect_left(self.open_sizes, node.view.slots)]
        self.open_count -= len(held)
        return Waiting(job.job_key, "no-free-nodes", tuple(n.view.node_id for n in held))


def _free(view: NodeView, taken: int = 0) -> int:
    """Free slots: what its jobs leave; on a node with GPUs, no more than the GPU indices left."""
    free = view.slots - view.used_slots - taken
    if view.gpus > 0:
        free = min(free, view.gpus - len({i for i in view.busy_gpus if 0 <= i < view.gpus}) - taken)
    return max(free, 0)


def _order(pending: Sequence[PendingJob]) -> list[PendingJob]:
    by_rank: dict[int, list[PendingJob]] = {}
    for job in pending:
        by_rank.setdefault(PRIORITY_RANK.get(job.priority, 1), []).append(job)
    seen: set[str] = set()
    ordered = []
    for rank in sorted(by_rank):
        for job in sorted(by_rank[rank], key=_BY_TIME_AND_KEY):
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


def _free_now(views: Sequence[NodeView], packing: str, taken: dict[str, int] | None = None,
              reserved: frozenset[str] = frozenset()) -> bool:
    """Could one of the nodes take a one-slot job now under `packing`, after `taken` slots of each and
    leaving the `reserved` ones alone?"""
    taken = taken or {}
    for view in views:
        if view.state not in CAPACITY_STATES or view.node_id in reserved:
            continue
        if packing == WHOLE_NODE and view.node_id in taken:
            continue
        if _schedulable_now(_Node(view, _free(view, taken.get(view.node_id, 0))), 1, packing):
            return True
    return False


def room_now(nodes: Sequence[NodeView], packing: str | None = None) -> bool:
    """Could any node take a job now under `packing` (None: under either)? False: a decision under
    that packing places nothing, so a caller that does not know the packing need not read it."""
    return any(_free_now(nodes, p) for p in (PACKINGS if packing is None else (packing,)))


def saturated(request: SchedulingRequest, reply: SchedulingReply) -> bool:
    """After `reply`, can no further pending job be placed? True when every node that could take a
    job now is taken by the reply or held for a waiting job. Jobs ranked after `request.pending`
    then only wait, so a caller that read just the first pending jobs (in `_order`'s order) has
    the same placements as with all of them."""
    taken: dict[str, int] = {}
    for placement in reply.assignments:
        for node_id in placement.node_ids:
            taken[node_id] = taken.get(node_id, 0) + placement.slots
    reserved = frozenset(node_id for w in reply.waiting for node_id in w.reserved)
    return not _free_now(request.nodes, request.packing, taken, reserved)
