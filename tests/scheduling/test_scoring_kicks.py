"""A batch-scoring job's end asks for a step of its run at once (a kick on `storage.Q_SCORING`); other
jobs' ends ask for nothing, and a kick that names no run is dropped."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.domain.keys import JobRef
from shared.services import scheduling, scoring, task_events
from tests.scheduling.conftest import T0, World

T1 = T0 + timedelta(seconds=10)


def _run_to_end(world: World, job: JobRef, node_id: str, exit_code: int) -> None:
    scheduling.run_pass(world.settings, world.key, T0)
    asg = world.asg(job)
    assert asg is not None
    for kind, code in (("task-started", None), ("task-exited", exit_code)):
        task_events.handle_task_event(world.settings, world.event(kind, node_id, job, asg.assignment_id,
                                                                  exit_code=code, at=T1), T1)


def _kicks_for(world: World, run: str) -> list[dict[str, str]]:
    """Take the kicks naming `run` off the queue (others are left as they were)."""
    queues, own, others = world.port.queues, [], []
    while batch := queues.receive(storage.Q_SCORING, count=32, visibility_timeout=30):
        for message in batch:
            body = json.loads(message.content)
            if body.get("run") == run:
                own.append(body)
                queues.delete(storage.Q_SCORING, message)
            else:
                others.append(message)
    for message in others:
        queues.release(storage.Q_SCORING, message)
    return own


def test_the_end_of_a_scoring_job_kicks_its_run_and_other_ends_do_not(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    run = f"{world.ws.child_pk}|score-{world.tag}"
    chunk = world.submit(f"score-{world.tag}-c0000-a1")
    ResourceStore(world.conn, storage.T_JOBS).update(
        chunk.experiment.job_pk, chunk.name.lower(), lambda d: d["internal"].__setitem__("scoringRun", run))
    _run_to_end(world, chunk, n1, exit_code=1)
    assert world.internal(chunk)["phase"] == "failed"
    assert _kicks_for(world, run) == [{"run": run, "job": chunk.name}]

    plain = world.submit("plain", at=1)
    _run_to_end(world, plain, n1, exit_code=0)
    assert world.internal(plain)["phase"] == "succeeded"
    assert _kicks_for(world, run) == []


def test_a_kick_that_names_no_run_is_dropped(world: World) -> None:
    for body in ("not json", "[]", json.dumps({"run": "no-separators"}), json.dumps({"other": 1})):
        assert scoring.on_kick(world.settings, body, T1) is None
    assert scoring.on_kick(world.settings, json.dumps({"run": f"{world.ws.child_pk}|gone"}), T1) is None
