"""Handovers a storage crash lost: the decision on its own, then the safety pass sending a held
assignment again to a node whose fresh heartbeat no longer lists it, and stopping an assignment a node
runs that the service does not hold. Heartbeat times are storage's own clock, so these tests dispatch a
minute in the past rather than at the suite's fixed T0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.decisions.handovers import Beat, strays, unlisted
from shared.domain.keys import JobRef
from shared.domain.messages import Assignment, StopTask
from shared.services import safety_pass, scheduling
from shared.services.assignments import AsgRow
from tests.scheduling.conftest import World

AFTER = timedelta(seconds=30)
D = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def beat(seconds: float, *assignments: str) -> Beat:
    return Beat(D + timedelta(seconds=seconds), frozenset(assignments))


def test_unlisted_needs_a_heartbeat_written_long_enough_after_the_dispatch() -> None:
    beats = {"listed": beat(60, "a"), "early": beat(29), "late": beat(30), "other": beat(90, "b")}
    assert unlisted(["listed", "early", "late", "other", "silent"], "a", D, beats, AFTER) == ["late", "other"]


def test_strays_are_running_assignments_nobody_holds() -> None:
    beats = {"n1": beat(0, "a", "x"), "n2": beat(0, "b"), "n3": beat(0)}
    assert strays(beats, {"a", "b"}) == {"n1": ["x"]}
    assert strays(beats, {"a", "b", "x"}) == {}


def _heartbeat(world: World, node_id: str, *assignment_ids: str) -> None:
    world.port.blobs.write(storage.C_HEARTBEATS, storage.heartbeat_blob(world.key, node_id), b"",
                           metadata={"assignments": ",".join(assignment_ids), "pid": "1"})


def _now() -> datetime:
    return datetime.now(UTC)


def _dispatched_a_minute_ago(world: World, name: str) -> tuple[str, JobRef, AsgRow]:
    """A job placed on node n1 and sent to it a minute ago (its Assignment message taken off the queue)."""
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit(name)
    scheduling.run_pass(world.settings, world.key, _now() - timedelta(seconds=60))
    asg = world.asg(job)
    assert asg is not None and [m.assignment_id for m in world.messages(n1)] == [asg.assignment_id]
    return n1, job, asg


def test_a_held_assignment_missing_from_a_fresh_heartbeat_is_sent_again_once(world: World) -> None:
    n1, job, asg = _dispatched_a_minute_ago(world, "lost")

    _heartbeat(world, n1, asg.assignment_id)
    assert job.key not in safety_pass.safety_pass(world.settings, _now()).rehanded
    assert world.messages(n1) == []

    _heartbeat(world, n1)  # the node no longer runs it: its end (or the message itself) was lost
    now = _now()
    assert safety_pass.safety_pass(world.settings, now).rehanded == [job.key]
    (again,) = world.messages(n1)
    assert isinstance(again, Assignment) and again.assignment_id == asg.assignment_id and again.task_index == 0
    assert world.internal(job)["phase"] == "assigned"  # nothing else moved: the node answers

    _heartbeat(world, n1)  # not yet 30 s after the second handover: no third one
    assert safety_pass.safety_pass(world.settings, now + timedelta(seconds=1)).rehanded == []
    assert world.messages(n1) == []


def test_an_assignment_the_service_does_not_hold_is_stopped(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    _heartbeat(world, n1, "ghost")
    result = safety_pass.safety_pass(world.settings, _now())
    assert result.stopped_strays == ["ghost"]
    (stop,) = world.messages(n1)
    assert isinstance(stop, StopTask) and stop.assignment_id == "ghost"


def test_a_job_being_stopped_gets_the_stop_again_not_the_assignment(world: World) -> None:
    n1, job, asg = _dispatched_a_minute_ago(world, "stopping")
    store = ResourceStore(world.conn, storage.T_JOBS)
    doc = store.get(world.exp.job_pk, "stopping")
    store.replace(doc, {**doc.data, "internal": {**doc.data["internal"], "phase": "terminating"}})
    _heartbeat(world, n1)
    assert safety_pass.safety_pass(world.settings, _now()).rehanded == [job.key]
    (stop,) = world.messages(n1)
    assert isinstance(stop, StopTask) and stop.assignment_id == asg.assignment_id
