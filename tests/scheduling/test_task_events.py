"""Task events and requeues against real Azurite, with nodes simulated by rows and queues."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.keys import JobRef
from shared.domain.messages import Assignment, StopTask
from shared.services import scheduling, task_events
from tests.scheduling.conftest import T0, World

T1, T2 = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)


def _assigned(world: World, ref: JobRef, node_ids: list[str]) -> str:
    scheduling.run_pass(world.settings, world.key, T0)
    asg = world.asg(ref)
    assert asg is not None and asg.node_ids == node_ids
    for node_id in node_ids:
        assert [type(m) for m in world.messages(node_id)] == [Assignment]
    return asg.assignment_id


def _handle(world: World, event_kind: str, node_id: str, ref: JobRef, asg_id: str, at=T1, **kw) -> str:
    return task_events.handle_task_event(world.settings, world.event(event_kind, node_id, ref, asg_id, at=at, **kw),
                                         at)


def test_success_runs_then_succeeds_and_frees_the_node(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("ok")
    asg_id = _assigned(world, job, [n1])
    assert _handle(world, "task-started", n1, job, asg_id) == "started"
    internal = world.internal(job)
    assert internal["phase"] == "running" and internal["executionInfo"]["startTime"] == T1.isoformat()
    assert _handle(world, "task-started", n1, job, asg_id, at=T2) == "started"  # redelivered: start time kept
    assert world.internal(job)["executionInfo"]["startTime"] == T1.isoformat()

    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, exit_code=0) == "succeeded"
    internal = world.internal(job)
    assert internal["phase"] == "succeeded"
    info = internal["executionInfo"]
    assert (info["exitCode"], info["endTime"], info.get("errors")) == (0, T2.isoformat(), None)
    assert internal["executionStateTransitionTime"] == T2.isoformat()
    assert [h["to"] for h in internal["history"]] == ["assigned", "running", "succeeded"]
    row = world.node_row(n1)
    assert (row["state"], row["jobKey"], row["assignmentId"]) == ("idle", "", "")
    assert row["idleSince"] == T2.isoformat()
    assert world.asg(job) is None


def test_an_end_that_carries_its_start_runs_and_ends_the_job(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("quick")
    asg_id = _assigned(world, job, [n1])
    assert world.internal(job)["phase"] == "assigned"
    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, exit_code=0, started_at=T1) == "succeeded"
    internal = world.internal(job)
    assert [(h["from"], h["to"], h["at"]) for h in internal["history"][-2:]] == [
        ("assigned", "running", T1.isoformat()), ("running", "succeeded", T2.isoformat())]
    assert (internal["executionInfo"]["startTime"], internal["executionInfo"]["endTime"]) == (
        T1.isoformat(), T2.isoformat())
    assert world.node_row(n1)["state"] == "idle" and world.asg(job) is None
    # Its task-started, sent after all (it was under way when the task ended), is stale now.
    assert _handle(world, "task-started", n1, job, asg_id, at=T1) == "stale"
    assert world.internal(job)["phase"] == "succeeded"


def test_an_end_that_carries_its_start_keeps_the_start_a_running_job_has(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("slow")
    asg_id = _assigned(world, job, [n1])
    _handle(world, "task-started", n1, job, asg_id, at=T1)
    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, exit_code=0, started_at=T2) == "succeeded"
    internal = world.internal(job)
    assert [h["to"] for h in internal["history"]] == ["assigned", "running", "succeeded"]
    assert internal["executionInfo"]["startTime"] == T1.isoformat()


def test_nonzero_exit_fails_with_the_exit_code(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("bad")
    asg_id = _assigned(world, job, [n1])
    _handle(world, "task-started", n1, job, asg_id)
    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, exit_code=3) == "failed"
    info = world.internal(job)["executionInfo"]
    assert world.internal(job)["phase"] == "failed" and info["exitCode"] == 3
    assert [e["code"] for e in info["errors"]] == ["JobFailed"]
    assert world.node_row(n1)["state"] == "idle"


def test_duplicate_exit_never_completes_twice(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("dup")
    asg_id = _assigned(world, job, [n1])
    assert _handle(world, "task-exited", n1, job, asg_id, at=T1, exit_code=0) == "succeeded"
    before = world.job(job)
    second = world.submit("next", at=1)
    scheduling.run_pass(world.settings, world.key, T1)
    assert world.node_row(n1)["jobKey"] == second.key
    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, exit_code=7) == "stale"
    assert world.job(job) == before
    assert world.node_row(n1)["jobKey"] == second.key  # the redelivery did not free the next job's node
    assert [h["to"] for h in before["internal"]["history"]] == ["assigned", "succeeded"]
    assert before["internal"]["executionInfo"]["startTime"] <= before["internal"]["executionInfo"]["endTime"]


def test_event_of_another_assignment_is_ignored(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("fenced")
    asg_id = _assigned(world, job, [n1])
    before = world.job(job)
    assert _handle(world, "task-started", n1, job, "not-" + asg_id) == "stale"
    assert _handle(world, "task-exited", n1, job, "not-" + asg_id, exit_code=1) == "stale"
    assert world.job(job) == before and world.asg(job).tasks == {}
    assert world.node_row(n1)["assignmentId"] == asg_id


def test_gang_failure_stops_the_peer_and_success_stops_serving_tasks(world: World) -> None:
    world.cluster_doc()
    a, b, c, d = (world.node(n) for n in ("a", "b", "c", "d"))
    failing, passing = world.submit("failing", node_count=2), world.submit("passing", node_count=2, at=1)
    scheduling.run_pass(world.settings, world.key, T0)
    f_asg, p_asg = world.asg(failing), world.asg(passing)
    for n in (a, b, c, d):
        world.messages(n)
    assert _handle(world, "task-exited", a, failing, f_asg.assignment_id, exit_code=3) == "failed"
    assert world.messages(b) == [StopTask(f_asg.assignment_id, "failed-peer")] and world.messages(a) == []
    assert world.internal(failing)["executionInfo"]["exitCode"] == 3
    # customToolkitSettings: task 1 only serves the gang; task 0 exiting 0 completes the job.
    assert _handle(world, "task-exited", c, passing, p_asg.assignment_id, exit_code=0) == "succeeded"
    assert world.messages(d) == [StopTask(p_asg.assignment_id, "job-finished")]
    assert all(world.node_row(n)["state"] == "idle" for n in (a, b, c, d))
    assert _handle(world, "task-exited", d, passing, p_asg.assignment_id, stop_reason="job-finished",
                   exit_code=143) == "stale"


def test_requeue_is_bounded_by_max_retries(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("flaky", at=3)
    submitted = world.internal(job)["submittedAt"]
    for attempt in (1, 2):
        asg_id = _assigned(world, job, [n1])
        _handle(world, "task-started", n1, job, asg_id)
        assert task_events.requeue_job(world.settings, job.key, asg_id, f"node {n1} lost", True, now=T1) == "requeued"
        internal = world.internal(job)
        assert (internal["phase"], internal["attempt"], internal["retries"]) == ("queued", attempt + 1, attempt)
        assert internal["executionInfo"]["errors"][-1]["code"] == "NodeLost"
        assert world.pending_keys() == [job.key] and world.asg(job) is None
        assert world.node_row(n1)["state"] == "idle"
        assert world.messages(n1) == [StopTask(asg_id, "requeue")]
        assert task_events.requeue_job(world.settings, job.key, asg_id, "again", True, now=T1) == "stale"
    pending = [r for r in world.rows() if r.get("jobKey") == job.key]
    assert pending[0]["submittedAt"] == submitted and pending[0]["attempt"] == 3
    asg_id = _assigned(world, job, [n1])
    assert world.asg(job).attempt == 3
    _handle(world, "task-started", n1, job, asg_id)  # only a job that started counts a retry
    assert task_events.requeue_job(world.settings, job.key, asg_id, f"node {n1} lost", True, now=T2) == "failed"
    internal = world.internal(job)
    assert internal["phase"] == "failed" and internal["executionInfo"]["errors"][-1]["code"] == "MaxRetriesExceeded"
    assert world.pending_keys() == [] and world.node_row(n1)["state"] == "idle"


def test_preempted_task_requeues_without_counting_a_retry(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("spot")
    asg_id = _assigned(world, job, [n1])
    _handle(world, "task-started", n1, job, asg_id)
    assert _handle(world, "task-exited", n1, job, asg_id, stop_reason="preempted", exit_code=143) == "requeue"
    internal = world.internal(job)
    assert (internal["phase"], internal["attempt"], internal["retries"]) == ("queued", 2, 0)
    assert internal["executionInfo"]["errors"][-1]["code"] == "Preempted"
    assert "startTime" not in internal["executionInfo"]
    assert world.pending_keys() == [job.key]


def test_a_preempted_task_s_node_leaves_and_its_job_goes_elsewhere(world: World) -> None:
    world.cluster_doc()
    n1, n2 = world.node("n1"), world.node("n2")
    job = world.submit("evicted")
    asg_id = _assigned(world, job, [n1])
    _handle(world, "task-started", n1, job, asg_id)
    # The eviction's task-exited comes before the node's own node-preempted: the node must not be idle between.
    assert _handle(world, "task-exited", n1, job, asg_id, stop_reason="preempted", exit_code=143) == "requeue"
    row = world.node_row(n1)
    assert (row["state"], row["leavingReason"], row["jobKey"]) == ("leaving", "preempted", "")
    scheduling.run_pass(world.settings, world.key, T2)
    assert world.asg(job).node_ids == [n2]


def test_wall_clock_stop_fails_with_its_code(world: World) -> None:
    from shared.services.job_control import terminate_job

    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("slow")
    asg_id = _assigned(world, job, [n1])
    _handle(world, "task-started", n1, job, asg_id)
    terminate_job(world.settings, job, "walltime", now=T1)
    assert world.internal(job)["phase"] == "terminating"
    assert world.messages(n1) == [StopTask(asg_id, "walltime")]
    assert _handle(world, "task-exited", n1, job, asg_id, at=T2, stop_reason="walltime", exit_code=137) == "failed"
    info = world.internal(job)["executionInfo"]
    assert [e["code"] for e in info["errors"]] == ["JobWallClockTimeExceeded"] and info["exitCode"] == 137


def test_priority_order_on_one_node(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    blocker = world.submit("blocker")
    asg_id = _assigned(world, blocker, [n1])
    _handle(world, "task-started", n1, blocker, asg_id)
    for i, (name, priority) in enumerate((("low", "low"), ("normal", "normal"), ("high1", "high"),
                                          ("high2", "high"))):
        world.submit(name, priority=priority, at=10 + i)
    order, current, asg_id = [], blocker, asg_id
    for _ in range(4):
        _handle(world, "task-exited", n1, current, asg_id, exit_code=0)
        scheduling.run_pass(world.settings, world.key, T1)
        (message,) = world.messages(n1)
        current, asg_id = JobRef.from_key(message.job_key), message.assignment_id
        order.append(current.name)
    assert order == ["high1", "high2", "normal", "low"]
