"""Gangs larger than one entity-group transaction are placed correctly (reserved over several
ETag-checked transactions), released in several, rolled back on a conflict, and a reservation left
half-done by a dead pass is rolled back by the safety pass. Over real Azurite."""

from __future__ import annotations

from datetime import timedelta

from shared.adapters import sched_store
from shared.domain.messages import Assignment
from shared.ports.rows import Delete, Insert, Merge, Write, key_fields
from shared.services import assignments, gangs, node_state, safety_pass, scheduling, task_events
from tests.scheduling.conftest import T0, World

SIZE = 150  # more nodes than one transaction holds (MAX_OPS - 2)


def big_cluster(alone: World) -> list[str]:
    alone.cluster_doc()
    return [alone.node(f"n{i:03d}") for i in range(SIZE)]


def test_a_gang_larger_than_a_transaction_runs_and_ends(alone: World) -> None:
    nodes = big_cluster(alone)
    job = alone.submit("wide", node_count=SIZE)
    result = scheduling.run_pass(alone.settings, alone.key, T0)
    assert [p.job_key for p in result.assigned] == [job.key] and result.conflicts == 0
    asg = alone.asg(job)
    assert sorted(asg.node_ids) == sorted(nodes) and asg.dispatched
    assert not (alone.sched.get(alone.key, sched_store.assignment_row(job.key)) or {}).get("reserving")
    rows = {n: alone.node_row(n) for n in nodes}
    assert {(r["state"], r["jobKey"], r["assignmentId"]) for r in rows.values()} == {
        ("running", job.key, asg.assignment_id)}
    assert alone.internal(job)["phase"] == "assigned" and alone.pending_keys() == []
    last = asg.node_ids.index(nodes[-1])
    assert alone.messages(nodes[-1]) == [Assignment(asg.assignment_id, job.key, 1, last)]

    for index, node in enumerate(asg.node_ids):
        task_events.handle_task_event(alone.settings, alone.event("task-exited", node, job, asg.assignment_id,
                                                                  task_index=index, exit_code=0), T0)
    assert alone.internal(job)["phase"] == "succeeded"
    assert alone.asg(job) is None
    assert {alone.node_row(n)["state"] for n in nodes} == {"idle"}


def test_a_conflict_during_the_reservation_rolls_it_back(alone: World) -> None:
    nodes = big_cluster(alone)
    job = alone.submit("wide", node_count=SIZE)
    snap = scheduling.read_snapshot(alone.settings, alone.key)
    reply = scheduling.schedule(scheduling.request_for(snap, scheduling.WHOLE_NODE, T0, lambda: "asg-1"))
    placement = reply.assignments[0]
    late = placement.node_ids[-1]  # taken by the last transaction: the first ones commit before the conflict
    alone.sched.write(Merge(alone.key, f"node|{late}", {"address": "10.9.9.9"}, None))

    assert gangs.reserve(alone.settings, alone.key, placement, snap.nodes, snap.pending[job.key], T0) is None
    assert alone.asg(job) is None and alone.pending_keys() == [job.key]
    assert {(alone.node_row(n)["state"], alone.node_row(n)["jobKey"]) for n in nodes} == {("idle", "")}
    assert len(scheduling.run_pass(alone.settings, alone.key, T0).assigned) == 1  # decided again: placed


def test_a_reservation_left_by_a_dead_pass_is_rolled_back(alone: World) -> None:
    nodes = big_cluster(alone)
    job = alone.submit("wide", node_count=SIZE)
    snap = scheduling.read_snapshot(alone.settings, alone.key)
    pending = snap.pending[job.key]
    # What a pass that died after its first transaction leaves: the reservation and its first nodes.
    taken = nodes[:10]
    entity = {**assignments.new_entity(alone.key, job.key, "asg-dead", [], 1, 1, T0), "reserving": True}
    ops: list[Write] = [Merge(alone.key, f"node|{n}", node_state.take_fields(snap.nodes[n], job.key, "asg-dead", 1, T0),
                              None) for n in taken]
    asg = {**entity, **assignments.split("nodes", [{"node_id": n, "address": ""} for n in taken])}
    alone.sched.transact(ops + [Delete(alone.key, pending["RowKey"]), Insert(*key_fields(asg))])
    early = safety_pass.safety_pass(alone.settings, T0 + timedelta(seconds=1))
    assert job.key not in early.redispatched and alone.asg(job) is not None  # young: its pass may be alive
    assert alone.messages(taken[0]) == []  # never dispatched half-done

    late = safety_pass.safety_pass(alone.settings, T0 + gangs.STALE_AFTER + timedelta(seconds=1))
    assert job.key in late.released
    assert alone.asg(job) is None and alone.pending_keys() == [job.key]
    assert {alone.node_row(n)["state"] for n in taken} == {"idle"}
    assert alone.internal(job)["phase"] == "queued"
