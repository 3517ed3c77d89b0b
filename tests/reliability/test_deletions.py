"""Intent-only deletes: a DELETE records intent and an operation, reading the operation changes
nothing, and the reconcile tick advances each cascade (one failing operation never stalls the
others). Over real Azurite, with nodes simulated by their rows, queues and events."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters import operation_store
from shared.domain.keys import ClusterRef
from shared.domain.messages import Assignment, StopTask
from shared.services import cluster_reconcile, removal, scheduling, task_events
from shared.services.guarded import ItemFailed
from tests.scheduling.conftest import T0, World

T1, T2, T3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))


def running_job(alone: World, name: str) -> tuple[str, str]:
    """A job running on a node of its own: (node id, assignment id)."""
    node = alone.node(f"n-{name}")
    job = alone.submit(name)
    scheduling.run_pass(alone.settings, alone.key, T0)
    asg_id = alone.asg(job).assignment_id
    task_events.handle_task_event(alone.settings, alone.event("task-started", node, job, asg_id), T0)
    assert alone.internal(job)["phase"] == "running"
    assert alone.messages(node) == [Assignment(asg_id, job.key, 1, 0)]
    return node, asg_id


def test_a_running_job_is_gone_on_the_second_tick_and_reading_its_operation_changes_nothing(alone: World) -> None:
    alone.cluster_doc()
    job = alone.exp.job("run")
    node, asg_id = running_job(alone, "run")

    op_id = removal.delete_job(alone.settings, job).op_id
    assert op_id is not None
    for _ in range(3):  # the operation endpoints read; nothing advances the deletion but the tick
        assert removal.poll(alone.settings, op_id).status == "InProgress"
    internal = alone.internal(job)
    assert internal["phase"] == "running" and internal["deletingSince"]
    assert alone.messages(node) == []  # intent only: the request stopped nothing

    first = removal.reconcile_all(alone.settings, T1)
    assert op_id in first.waiting and alone.internal(job)["phase"] == "terminating"
    assert alone.messages(node) == [StopTask(asg_id, "deleted")]

    task_events.handle_task_event(alone.settings, alone.event("task-exited", node, job, asg_id, exit_code=143,
                                                              stop_reason="deleted"), T1)
    second = removal.reconcile_all(alone.settings, T2)
    assert op_id in second.finished
    assert removal.poll(alone.settings, op_id).status == "Succeeded"
    assert alone.asg(job) is None and alone.node_row(node)["state"] == "idle"
    with pytest.raises(AssertionError):
        alone.job(job)  # the document is gone
    assert op_id not in {i for i, _ in operation_store.in_flight(alone.conn)}


def test_a_queued_job_is_gone_on_the_first_tick(alone: World) -> None:
    alone.cluster_doc()
    job = alone.submit("waiting")
    op_id = removal.delete_job(alone.settings, job).op_id
    assert alone.pending_keys() == [job.key]  # nothing happened yet but the intent
    assert op_id in removal.reconcile_all(alone.settings, T1).finished
    assert alone.pending_keys() == []
    assert removal.poll(alone.settings, op_id).status == "Succeeded"


def test_a_cluster_deletion_fails_queued_jobs_and_stops_running_ones(alone: World) -> None:
    alone.cluster_doc()
    running = alone.exp.job("busy")
    node, asg_id = running_job(alone, "busy")
    queued = alone.submit("later")

    op_id = removal.delete_cluster(alone.settings, ClusterRef(alone.ws, "gpu")).op_id
    assert alone.internal(queued)["phase"] == "queued"  # intent only
    assert op_id in removal.reconcile_all(alone.settings, T1).finished
    failed = alone.internal(queued)
    assert failed["phase"] == "failed"
    assert [(e["code"], e["message"]) for e in failed["executionInfo"]["errors"]] == [
        ("ClusterDeleted", "The cluster 'gpu' was deleted.")]
    assert alone.internal(running)["phase"] == "terminating"
    assert alone.messages(node) == [StopTask(asg_id, "cluster-deleted")]

    task_events.handle_task_event(alone.settings, alone.event("task-exited", node, running, asg_id, exit_code=143,
                                                              stop_reason="cluster-deleted"), T2)
    ended = alone.internal(running)
    assert ended["phase"] == "failed" and ended["executionInfo"]["errors"][-1]["code"] == "ClusterDeleted"


def test_a_failing_operation_does_not_stall_the_others(alone: World) -> None:
    alone.cluster_doc()
    job = alone.submit("fine")
    broken = "00000000-0000-0000-0000-0000000000bd"
    operation_store.create(alone.conn, broken, "delete-job", {"job": "not a job key"}, T0.isoformat())
    try:
        op_id = removal.delete_job(alone.settings, job).op_id
        with pytest.raises(ExceptionGroup) as raised:
            removal.reconcile_all(alone.settings, T1)
        assert [type(e) for e in raised.value.exceptions] == [ItemFailed]
        assert broken in str(raised.value.exceptions[0])
        assert removal.poll(alone.settings, op_id).status == "Succeeded"
        assert removal.poll(alone.settings, broken).status == "InProgress"  # tried again on the next tick
    finally:
        operation_store.forget(alone.conn, broken)


def test_jobs_left_in_the_index_of_a_deleted_cluster_are_stopped(alone: World, tmp_path: Path) -> None:
    """A job indexed after its cluster's deletion took its jobs (a create racing the delete) is failed
    by the reconciler, which visits every partition that still holds work."""
    job = alone.submit("late")  # its cluster has no document: it was deleted meanwhile
    settings = dataclasses.replace(alone.settings, state_dir=tmp_path)
    results = cluster_reconcile.reconcile_all(settings, T1)
    assert alone.key in {r.cluster_key for r in results if r.deleted}
    internal = alone.internal(job)
    assert internal["phase"] == "failed" and internal["executionInfo"]["errors"][-1]["code"] == "ClusterDeleted"
    assert alone.pending_keys() == []
