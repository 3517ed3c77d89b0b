"""GPU slots: how many slots a node offers and a job takes, which GPU indices a placement gets, and
how many nodes pending work needs when jobs share nodes. Pure: numbers in, numbers out.

A node offers its GPUs as slots (its cores when it has none: a CPU cluster can pack too); a job
takes `gpusPerNode` slots on each of its nodes (1 when it does not say). A placement on a node
with GPUs gets GPU indices: under `gpu-slots` packing the lowest indices no other job on the node
holds, under `whole-node` packing every GPU of the node. The indices are recorded with the
assignment and on the node row, so two tasks never share one; a task sees exactly its own
(`CUDA_VISIBLE_DEVICES`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

WHOLE_NODE = "whole-node"
GPU_SLOTS = "gpu-slots"
PACKINGS = (WHOLE_NODE, GPU_SLOTS)


def node_slots(gpus: int, cores: int) -> int:
    """The slots a node offers: its GPUs, else its cores, else one."""
    return max(gpus, 0) or max(cores, 0) or 1


def job_slots(properties: Mapping[str, Any]) -> int:
    """The slots a job takes on each of its nodes: its `gpusPerNode`, else one."""
    value = properties.get("gpusPerNode")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def lowest_free(gpus: int, busy: Collection[int], count: int) -> tuple[int, ...]:
    """The `count` lowest indices of a node's `gpus` GPUs that `busy` does not hold (fewer when
    fewer are free)."""
    return tuple(i for i in range(gpus) if i not in busy)[:max(count, 0)]


def devices_for(packing: str, gpus: int, busy: Collection[int], slots: int) -> tuple[int, ...]:
    """The GPU indices a placement of `slots` slots gets on a node with `gpus` GPUs, `busy` held."""
    if packing == WHOLE_NODE:
        return tuple(range(max(gpus, 0)))
    return lowest_free(gpus, busy, slots)


def visible_devices(indices: Sequence[int]) -> str:
    """`CUDA_VISIBLE_DEVICES` for these indices."""
    return ",".join(str(i) for i in indices)


def nodes_needed(pending: Sequence[tuple[int, int]], free: Sequence[int], per_node: int, maximum: int) -> int:
    """How many new nodes of `per_node` slots the pending jobs ((nodeCount, slots per node) each) need,
    after the `free` slots of the nodes running jobs now. A job that can never fit (more nodes than
    `maximum`, more slots than a node has) needs none. Each task of a gang goes to a distinct node;
    jobs are placed largest slots first, each task on the fullest node it fits (as the scheduler
    does), so the count is what the scheduler would pack them into, not a bound."""
    bins = [f for f in free if f > 0]
    opened = 0
    jobs = sorted((j for j in pending if 0 < j[0] <= maximum and 0 < j[1] <= per_node), key=lambda j: (-j[1], -j[0]))
    for node_count, slots in jobs:
        used: set[int] = set()
        for _ in range(node_count):
            fits = [i for i, f in enumerate(bins) if f >= slots and i not in used]
            if fits:
                chosen = min(fits, key=lambda i: (bins[i], i))
            else:
                bins.append(per_node)
                opened += 1
                chosen = len(bins) - 1
            bins[chosen] -= slots
            used.add(chosen)
    return opened
