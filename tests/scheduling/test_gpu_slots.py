"""GPU slots, table-driven on declared slot counts: slot arithmetic, which GPU indices a placement
gets, and how many nodes the autoscaler asks for when jobs share nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions import gpu_slots
from shared.decisions.autoscaler import InstanceView, ScaleInput, ScalePolicy, decide
from shared.decisions.autoscaler import NodeView as ScaleNode
from shared.decisions.scheduler import GPU_SLOTS, WHOLE_NODE, NodeView, PendingJob, SchedulingRequest, schedule

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("gpus", "cores", "slots"), [(2, 12, 2), (0, 4, 4), (0, 0, 1), (8, 0, 8)])
def test_a_node_offers_its_gpus_else_its_cores(gpus: int, cores: int, slots: int) -> None:
    assert gpu_slots.node_slots(gpus, cores) == slots


@pytest.mark.parametrize(("properties", "slots"), [
    ({}, 1), ({"gpusPerNode": 2}, 2), ({"gpusPerNode": None}, 1), ({"gpusPerNode": True}, 1),
    ({"gpusPerNode": 0}, 1), ({"gpusPerNode": "2"}, 1),
])
def test_a_job_takes_its_gpus_per_node(properties: dict[str, object], slots: int) -> None:
    assert gpu_slots.job_slots(properties) == slots


@pytest.mark.parametrize(("packing", "gpus", "busy", "slots", "devices"), [
    (GPU_SLOTS, 2, set(), 1, (0,)),
    (GPU_SLOTS, 2, {0}, 1, (1,)),
    (GPU_SLOTS, 4, {1}, 2, (0, 2)),
    (GPU_SLOTS, 4, {0, 2}, 2, (1, 3)),
    (GPU_SLOTS, 2, {0, 1}, 1, ()),
    (GPU_SLOTS, 0, set(), 1, ()),  # a CPU node packs by cores: no GPU to give
    (GPU_SLOTS, 2, {5}, 2, (0, 1)),  # an index beyond the node's GPUs holds none of them
    (WHOLE_NODE, 4, set(), 1, (0, 1, 2, 3)),
    (WHOLE_NODE, 0, set(), 1, ()),
])
def test_a_placement_gets_the_lowest_free_indices(packing: str, gpus: int, busy: set[int], slots: int,
                                                  devices: tuple[int, ...]) -> None:
    assert gpu_slots.devices_for(packing, gpus, busy, slots) == devices
    assert gpu_slots.visible_devices(devices) == ",".join(map(str, devices))


def gpu_node(node_id: str, gpus: int, busy: tuple[int, ...] = (), state: str = "idle") -> NodeView:
    jobs = tuple(f"held-{i}" for i in busy)
    return NodeView(node_id, state if not busy else "running", slots=gpus, used_slots=len(busy), jobs=jobs,
                    gpus=gpus, busy_gpus=frozenset(busy))


def job(key: str, at: int = 0, n: int = 1, slots: int = 1) -> PendingJob:
    return PendingJob(key, "normal", T0 + timedelta(seconds=at), node_count=n, slots=slots)


def placements(nodes: list[NodeView], pending: list[PendingJob],
               packing: str = GPU_SLOTS) -> dict[str, dict[str, tuple[int, ...]]]:
    reply = schedule(SchedulingRequest(nodes, pending, T0, [f"a{i}" for i in range(len(pending))], packing))
    return {p.job_key: {n: p.gpus_on(n) for n in p.node_ids} for p in reply.assignments}


SCHEDULES = [
    pytest.param([gpu_node("g1", 2)], [job("a"), job("b", at=1)], {"a": {"g1": (0,)}, "b": {"g1": (1,)}},
                 id="two-1-gpu-jobs-share-a-2-gpu-node-on-disjoint-gpus"),
    pytest.param([gpu_node("g1", 2)], [job("a"), job("b", at=1), job("c", at=2)],
                 {"a": {"g1": (0,)}, "b": {"g1": (1,)}}, id="a-third-waits-for-a-free-gpu"),
    pytest.param([gpu_node("g1", 2, busy=(0,))], [job("a")], {"a": {"g1": (1,)}}, id="a-held-index-is-skipped"),
    pytest.param([gpu_node("g1", 4, busy=(1,))], [job("a", slots=2), job("b", at=1)],
                 {"a": {"g1": (0, 2)}, "b": {"g1": (3,)}}, id="indices-need-not-be-contiguous"),
    pytest.param([gpu_node("g1", 2, busy=(0,)), gpu_node("g2", 2)], [job("a")], {"a": {"g1": (1,)}},
                 id="best-fit-fills-the-busy-node-first"),
    pytest.param([gpu_node("g1", 2), gpu_node("g2", 2)], [job("gang", n=2)],
                 {"gang": {"g1": (0,), "g2": (0,)}}, id="a-gang-gets-indices-on-each-node"),
    pytest.param([gpu_node("g1", 2)], [job("big", slots=3)], {}, id="more-gpus-than-the-node-has-never-fits"),
    pytest.param([NodeView("g1", "running", slots=2, used_slots=1, jobs=("old",), gpus=2,
                           busy_gpus=frozenset({0, 1}))], [job("a")], {},
                 id="no-free-index-no-placement-whatever-the-slot-count-says"),
]


@pytest.mark.parametrize(("nodes", "pending", "expected"), SCHEDULES)
def test_gpu_slot_placements(nodes: list[NodeView], pending: list[PendingJob],
                             expected: dict[str, dict[str, tuple[int, ...]]]) -> None:
    assert placements(nodes, pending) == expected


def test_whole_node_placements_get_every_gpu_of_their_node() -> None:
    assert placements([gpu_node("g1", 2), gpu_node("g2", 2)], [job("a"), job("b", at=1)], WHOLE_NODE) == \
        {"a": {"g1": (0, 1)}, "b": {"g2": (0, 1)}}


@pytest.mark.parametrize(("pending", "free", "per_node", "needed"), [
    ([(1, 1), (1, 1)], [], 2, 1),  # two 1-GPU jobs: one 2-GPU node
    ([(1, 1)] * 3, [], 2, 2),
    ([(1, 1), (1, 1)], [1], 2, 1),  # a running node's free GPU takes one of them
    ([(1, 1), (1, 1)], [1, 1], 2, 0),
    ([(1, 2), (1, 1), (1, 1)], [], 2, 2),
    ([(2, 1)], [], 4, 2),  # a gang's tasks go to distinct nodes
    ([(2, 1), (2, 1)], [], 4, 2),
    ([(1, 3)], [], 2, 0),  # never fits a node: no demand
    ([(5, 1)], [], 4, 0),  # more nodes than the cluster may have (maximum 4): no demand
    ([(1, 1)] * 8, [], 8, 1),
])
def test_nodes_needed_counts_slots(pending: list[tuple[int, int]], free: list[int], per_node: int,
                                   needed: int) -> None:
    assert gpu_slots.nodes_needed(pending, free, per_node, maximum=4) == needed


def scale(packing: str, nodes: list[ScaleNode], pending: list[tuple[int, int]], node_slots: int = 2) -> int:
    instances = [InstanceView(n.node_id, "running") for n in nodes]
    return decide(ScaleInput(ScalePolicy(minimum=0, maximum=4), nodes, instances, [n for n, _ in pending], T0, 300.0,
                             packing=packing, pending_slots=[s for _, s in pending],
                             node_slots=node_slots)).wanted


def test_autoscaling_counts_slots_under_gpu_slot_packing() -> None:
    assert scale(GPU_SLOTS, [], [(1, 1), (1, 1)]) == 1
    assert scale(WHOLE_NODE, [], [(1, 1), (1, 1)]) == 2
    running = [ScaleNode("g1", "running", job_key="j", free_slots=1)]
    assert scale(GPU_SLOTS, running, [(1, 1)]) == 1  # the busy node's free GPU takes it
    assert scale(GPU_SLOTS, running, [(1, 1), (1, 1)]) == 2
    assert scale(GPU_SLOTS, [ScaleNode("g1", "running", job_key="j", free_slots=0)], [(1, 2)], node_slots=4) == 2
    assert scale(GPU_SLOTS, [], [(1, 8)], node_slots=4) == 0  # larger than any node: no node for it
