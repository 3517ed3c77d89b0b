"""Scheduling passes against real Azurite: the atomic commit, dispatch, batching and the safety pass."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.adapters import sched_store, storage
from shared.adapters.resource_store import ResourceStore
from shared.domain.messages import Assignment
from shared.ports.rows import Delete
from shared.services import safety_pass, scheduling
from tests.scheduling.conftest import T0, World


def test_pass_commits_assignments_and_dispatches(world: World) -> None:
    world.cluster_doc()
    n1, n2, n3 = world.node("n1"), world.node("n2"), world.node("n3")
    world.node("n4", state="preparing")
    solo = world.submit("solo", priority="high", at=5)
    pair = world.submit("pair", node_count=2, at=1)
    later = world.submit("later", at=9)

    result = scheduling.run_pass(world.settings, world.key, T0)

    assert sorted(p.job_key for p in result.assigned) == sorted([solo.key, pair.key])
    assert world.pending_keys() == [later.key]
    solo_asg, pair_asg = world.asg(solo), world.asg(pair)
    assert solo_asg is not None and pair_asg is not None
    assert solo_asg.node_ids == [n1] and pair_asg.node_ids == [n2, n3]  # high first, then by node id
    assert solo_asg.dispatched and pair_asg.dispatched and solo_asg.tasks == {}
    assert pair_asg.nodes[0].address == world.node_row(n2)["address"]
    for node_id, asg in ((n1, solo_asg), (n2, pair_asg), (n3, pair_asg)):
        row = world.node_row(node_id)
        assert (row["state"], row["jobKey"], row["assignmentId"]) == ("running", asg.job_key, asg.assignment_id)
        assert json.loads(row["history"])[-1]["to"] == "running"
    internal = world.internal(pair)
    assert internal["phase"] == "assigned" and internal["assignmentId"] == pair_asg.assignment_id
    assert [h["to"] for h in internal["history"]] == ["assigned"]
    assert internal["executionStateTransitionTime"] == T0.isoformat()

    (m1,), (m2,), (m3,) = world.messages(n1), world.messages(n2), world.messages(n3)
    assert isinstance(m2, Assignment) and isinstance(m3, Assignment)
    assert (m2.task_index, m3.task_index) == (0, 1) and m2.assignment_id == m3.assignment_id
    # Messages carry ids only: a node fetches its task by them.
    assert m1 == Assignment(solo_asg.assignment_id, solo.key, attempt=1, task_index=0)
    assert m2.job_key == pair.key and m2.attempt == 1


def test_second_pass_changes_nothing(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    world.submit("a")
    world.submit("b", at=1)
    first = scheduling.run_pass(world.settings, world.key, T0)
    rows_before = {r["RowKey"]: r.etag for r in world.rows()}
    world.messages(n1)
    second = scheduling.run_pass(world.settings, world.key, T0)
    assert len(first.assigned) == 1 and second.assigned == []
    assert second.waiting == []  # n1 is busy: no room, nothing to decide
    assert {r["RowKey"]: r.etag for r in world.rows()} == rows_before
    assert world.messages(n1) == []


def test_pending_job_whose_document_vanished_releases_its_nodes(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    ghost = world.submit("ghost")
    ResourceStore(world.conn, storage.T_JOBS).delete(world.exp.job_pk, "ghost")
    result = scheduling.run_pass(world.settings, world.key, T0)
    assert result.assigned == [] and result.released == [ghost.key]
    assert world.node_row(n1)["state"] == "idle" and world.node_row(n1)["jobKey"] == ""
    assert world.asg(ghost) is None and world.pending_keys() == []
    assert world.messages(n1) == []


def test_more_than_one_transaction_of_assignments(world: World) -> None:
    world.cluster_doc()
    nodes = [world.node(f"n{i:02d}") for i in range(45)]
    jobs = [world.submit(f"j{i:02d}", at=i) for i in range(45)]  # 45 nodes + 90 rows > 100 operations
    result = scheduling.run_pass(world.settings, world.key, T0)
    assert sorted(p.job_key for p in result.assigned) == sorted(j.key for j in jobs)
    holders = [world.node_row(n)["jobKey"] for n in nodes]
    assert sorted(holders) == sorted(j.key for j in jobs)
    assert world.pending_keys() == []


def test_gpu_slot_packing_puts_two_jobs_on_one_node(world: World) -> None:
    world.cluster_doc(packing="gpu-slots")
    g1 = world.node("g1", gpus=2)
    a, b, c = world.submit("a"), world.submit("b", at=1), world.submit("c", at=2)
    result = scheduling.run_pass(world.settings, world.key, T0)
    assert [p.job_key for p in result.assigned] == [a.key, b.key]
    row = world.node_row(g1)
    assert row["state"] == "running" and row["usedSlots"] == 2
    assert set(json.loads(row["jobs"])) == {a.key, b.key}
    assert world.pending_keys() == [c.key]


def _commit_without_dispatch(world: World) -> str:
    """A pass that crashed right after its commit: the asg row exists, nothing was sent."""
    snap = scheduling.read_snapshot(world.settings, world.key)
    reply = scheduling.schedule(scheduling.request_for(snap, "whole-node", T0, lambda: "crashed-asg"))
    ops, _ = scheduling.commit_operations(snap, world.key, reply.assignments, T0)
    world.sched.transact(ops)
    return reply.assignments[0].job_key


def test_safety_pass_repairs_a_crashed_pass_and_the_indexes(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    stuck = world.submit("stuck")
    assert _commit_without_dispatch(world) == stuck.key
    orphan = world.submit("orphan", at=1)
    world.sched.write(Delete(world.key, [r["RowKey"] for r in world.rows() if r.get("jobKey") == orphan.key
                                         and r["RowKey"].startswith(sched_store.PENDING)][0]))
    done = world.submit("done", at=2)
    ResourceStore(world.conn, storage.T_JOBS).replace(
        *(lambda d: (d, {**d.data, "internal": {**d.data["internal"], "phase": "failed"}}))(
            ResourceStore(world.conn, storage.T_JOBS).get(world.exp.job_pk, "done")))

    early = safety_pass.safety_pass(world.settings, T0 + timedelta(seconds=1))
    assert stuck.key not in early.redispatched and world.messages(n1) == []  # too recent to be a crash
    assert orphan.key in early.readded and orphan.key in world.pending_keys()
    assert done.key in early.dropped_pending and done.key not in world.pending_keys()

    result = safety_pass.safety_pass(world.settings, T0 + timedelta(seconds=30))
    assert stuck.key in result.redispatched
    (message,) = world.messages(n1)
    assert message.assignment_id == "crashed-asg" and message.job_key == stuck.key
    assert world.internal(stuck)["phase"] == "assigned" and world.asg(stuck).dispatched
    assert result.readded == [] and result.dropped_pending == []  # idempotent
    assert world.key in result.kicked


def test_safety_pass_releases_an_assignment_whose_job_ended(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("ended")
    scheduling.run_pass(world.settings, world.key, T0)
    store = ResourceStore(world.conn, storage.T_JOBS)
    doc = store.get(world.exp.job_pk, "ended")
    store.replace(doc, {**doc.data, "internal": {**doc.data["internal"], "phase": "succeeded"}})
    result = safety_pass.safety_pass(world.settings, T0 + timedelta(seconds=30))
    assert job.key in result.released
    assert world.asg(job) is None and world.node_row(n1)["state"] == "idle"
