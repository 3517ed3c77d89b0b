"""The scheduling policy stated plainly, one scan of the nodes per pending job: the scheduler as it was
before it kept its free and open nodes in queues (`shared.decisions.scheduler`; the per-node helpers,
unchanged, are its own). The property test checks that both decide exactly the same for any request."""

from __future__ import annotations

from collections.abc import Sequence

from shared.decisions.gpu_slots import GPU_SLOTS, PACKINGS, WHOLE_NODE, devices_for
from shared.decisions.scheduler import (
    CAPACITY_STATES,
    PRIORITY_RANK,
    PendingJob,
    Placement,
    SchedulingReply,
    SchedulingRequest,
    Waiting,
    _free,
    _Node,
    _schedulable_now,
    _slots,
)


def reference_schedule(request: SchedulingRequest) -> SchedulingReply:
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


def _order(pending: Sequence[PendingJob]) -> list[PendingJob]:
    seen: set[str] = set()
    ordered = []
    for job in sorted(pending, key=lambda j: (PRIORITY_RANK.get(j.priority, 1), j.submitted_at, j.job_key)):
        if job.job_key not in seen and job.node_count >= 1:
            seen.add(job.job_key)
            ordered.append(job)
    return ordered


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
