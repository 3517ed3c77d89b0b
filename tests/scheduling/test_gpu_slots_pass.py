"""GPU slots through the scheduling pass over real Azurite: the GPU indices each placement gets are
committed with its assignment and on the node row, a freed index goes to the next job, jobs ask
for slots with gpusPerNode, and a large gang's reservation records them too."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.services import assignments, gangs, scheduling
from tests.scheduling.conftest import T0, World


def indices(world: World, node_id: str) -> dict[str, list[int]]:
    """{job key: the GPU indices it holds} on a node row, as stored."""
    return {k: v.get("gpus", []) for k, v in json.loads(world.node_row(node_id).get("jobs") or "{}").items()}


def test_two_1_gpu_jobs_share_a_2_gpu_node_on_disjoint_indices(world: World) -> None:
    world.cluster_doc(packing="gpu-slots")
    g = world.node("g", gpus=2)
    a, b, c = (world.submit(n, at=i, gpus_per_node=1) for i, n in enumerate("abc"))
    result = scheduling.run_pass(world.settings, world.key, T0)
    assert [p.job_key for p in result.assigned] == [a.key, b.key]
    assert [p.gpus for p in result.assigned] == [((0,),), ((1,),)]
    assert indices(world, g) == {a.key: [0], b.key: [1]}
    asg_a, asg_b = world.asg(a), world.asg(b)
    assert asg_a is not None and asg_b is not None
    assert (asg_a.gpus, asg_b.gpus) == ({g: [0]}, {g: [1]})  # read back: it outlives the pass
    assert world.pending_keys() == [c.key]

    # a ends: its index is freed, and the waiting job gets exactly it
    assert assignments.release(world.settings, world.key, a.key, asg_a.assignment_id, T0, kick=False)
    assert indices(world, g) == {b.key: [1]}
    result = scheduling.run_pass(world.settings, world.key, T0 + timedelta(seconds=5))
    assert [(p.job_key, p.gpus) for p in result.assigned] == [(c.key, ((0,),))]
    assert indices(world, g) == {b.key: [1], c.key: [0]}
    assert world.node_row(g)["usedSlots"] == 2


def test_gpus_per_node_takes_that_many_slots(world: World) -> None:
    world.cluster_doc(packing="gpu-slots")
    g = world.node("g", gpus=4)
    two, three = world.submit("two", gpus_per_node=2), world.submit("three", at=1, gpus_per_node=3)
    one = world.submit("one", at=2, gpus_per_node=1)
    result = scheduling.run_pass(world.settings, world.key, T0)
    # "three" does not fit beside "two" and holds the node (head of line): "one" may not jump it
    assert [(p.job_key, p.gpus) for p in result.assigned] == [(two.key, ((0, 1),))]
    assert world.pending_keys() == [three.key, one.key]
    assert world.node_row(g)["usedSlots"] == 2


def test_whole_node_clusters_give_a_job_every_gpu(world: World) -> None:
    world.cluster_doc()
    g1, g2 = world.node("g1", gpus=2), world.node("g2", gpus=2)
    a, b = world.submit("a", gpus_per_node=1), world.submit("b", at=1, gpus_per_node=1)
    scheduling.run_pass(world.settings, world.key, T0)
    assert (indices(world, g1), indices(world, g2)) == ({a.key: [0, 1]}, {b.key: [0, 1]})


def test_a_large_gang_reservation_records_its_indices(world: World) -> None:
    world.cluster_doc(packing="gpu-slots")
    node_ids = [world.node(f"n{i:03d}", gpus=2) for i in range(assignments.MAX_OPS)]
    gang = world.submit("gang", node_count=assignments.MAX_OPS, gpus_per_node=1)
    assert not gangs.fits_one_transaction(assignments.MAX_OPS)
    result = scheduling.run_pass(world.settings, world.key, T0)
    assert [p.job_key for p in result.assigned] == [gang.key]
    asg = world.asg(gang)
    assert asg is not None and asg.gpus == {n: [0] for n in node_ids}
    assert {n: indices(world, n) for n in (node_ids[0], node_ids[-1])} == \
        {node_ids[0]: {gang.key: [0]}, node_ids[-1]: {gang.key: [0]}}
