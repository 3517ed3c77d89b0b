"""Terminate and stop-for-delete against real Azurite."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.messages import Assignment, StopTask
from shared.services import scheduling, task_events
from shared.services.job_control import stop_for_delete, terminate_job
from tests.scheduling.conftest import T0, World

T1, T2 = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)


def test_terminate_queued_job_fails_it_and_leaves_the_queue(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1", state="starting")
    job = world.submit("waiting")
    terminate_job(world.settings, job, "terminated", now=T1)
    internal = world.internal(job)
    assert internal["phase"] == "failed" and world.pending_keys() == []
    assert [e["code"] for e in internal["executionInfo"]["errors"]] == ["JobTerminated"]
    assert internal["executionInfo"]["endTime"] == T1.isoformat()
    before = world.job(job)
    terminate_job(world.settings, job, "terminated", now=T2)  # terminal: a no-op
    assert world.job(job) == before
    world.node("n1")  # the node becomes idle: nothing is left to run
    assert scheduling.run_pass(world.settings, world.key, T2).assigned == []
    assert world.messages(n1) == []


def test_terminate_running_gang_stops_every_node_then_fails(world: World) -> None:
    world.cluster_doc()
    a, b = world.node("a"), world.node("b")
    job = world.submit("gang", node_count=2)
    scheduling.run_pass(world.settings, world.key, T0)
    asg_id = world.asg(job).assignment_id
    assert [type(m) for m in world.messages(a) + world.messages(b)] == [Assignment, Assignment]
    task_events.handle_task_event(world.settings, world.event("task-started", a, job, asg_id), T0)

    terminate_job(world.settings, job, "terminated", now=T1)
    internal = world.internal(job)
    assert internal["phase"] == "terminating" and internal["stopReason"] == "terminated"
    assert world.messages(a) == [StopTask(asg_id, "terminated")] == world.messages(b)
    terminate_job(world.settings, job, "terminated", now=T1)  # asked again: stops sent again, state unchanged
    assert world.messages(a) == [StopTask(asg_id, "terminated")]
    assert world.internal(job)["history"] == internal["history"]

    ev = world.event("task-exited", a, job, asg_id, exit_code=143, stop_reason="terminated", at=T2)
    assert task_events.handle_task_event(world.settings, ev, T2) == "failed"
    internal = world.internal(job)
    assert internal["phase"] == "failed" and internal["executionInfo"]["exitCode"] == 143
    assert [e["code"] for e in internal["executionInfo"]["errors"]] == ["JobTerminated"]
    assert world.node_row(a)["state"] == "idle" == world.node_row(b)["state"]
    assert world.asg(job) is None


def test_stop_reaches_a_node_before_its_assignment_and_is_sent_again(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("early-stop")
    scheduling.run_pass(world.settings, world.key, T0)
    asg_id = world.asg(job).assignment_id
    terminate_job(world.settings, job, "cluster gpu was deleted", now=T1)
    assert [type(m) for m in world.messages(n1)] == [Assignment, StopTask]
    assert world.internal(job)["stopDetail"] == "cluster gpu was deleted"
    task_events.handle_task_event(world.settings, world.event("task-started", n1, job, asg_id), T1)
    assert world.messages(n1) == [StopTask(asg_id, "terminated")]
    assert world.internal(job)["phase"] == "terminating"


def test_requeue_of_a_terminating_job_fails_it_instead(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("dying")
    scheduling.run_pass(world.settings, world.key, T0)
    asg_id = world.asg(job).assignment_id
    terminate_job(world.settings, job, "terminated", now=T1)
    assert task_events.requeue_job(world.settings, job.key, asg_id, f"node {n1} lost", True, now=T2) == "failed"
    internal = world.internal(job)
    assert internal["phase"] == "failed" and internal["executionInfo"]["errors"][-1]["code"] == "JobTerminated"
    assert world.pending_keys() == [] and world.node_row(n1)["state"] == "idle"


def test_stop_for_delete(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    queued, running = world.submit("queued", at=5), world.submit("running")
    scheduling.run_pass(world.settings, world.key, T0)
    asg_id = world.asg(running).assignment_id
    world.messages(n1)

    assert stop_for_delete(world.settings, queued, now=T1) is True
    assert world.pending_keys() == []

    assert stop_for_delete(world.settings, running, now=T1) is False
    assert world.internal(running)["stopReason"] == "deleted"
    assert world.messages(n1) == [StopTask(asg_id, "deleted")]
    assert stop_for_delete(world.settings, running, now=T1) is False  # still running: polled again
    ev = world.event("task-exited", n1, running, asg_id, exit_code=143, stop_reason="deleted", at=T2)
    task_events.handle_task_event(world.settings, ev, T2)
    assert [e["code"] for e in world.internal(running)["executionInfo"]["errors"]] == ["JobDeleted"]
    assert stop_for_delete(world.settings, running, now=T2) is True
    assert world.node_row(n1)["state"] == "idle"
