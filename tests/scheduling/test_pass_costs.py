"""What a pass and a task's end cost in storage calls, counted on the port's in-memory twin: a pass
reads the cluster's packing from the nodes it gave jobs (the cluster document only when they record
none or disagree) and reads nothing when there is no room, and a one-task job's end writes no task
result before its release (a gang's still does). The outcomes are the same as before; the other tests of this package
hold them on both ports."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import ports
from shared.adapters import sched_store, storage
from shared.config import Settings
from shared.ports.memory_storage import MemoryTable
from shared.ports.rows import Merge
from shared.services import scheduling, task_events
from tests.scheduling.conftest import T0, World


@pytest.fixture
def world(storage_conn: str) -> Iterator[World]:  # storage_conn: the environment the services read
    conn = ports.memory(uuid.uuid4().hex)
    yield World(dataclasses.replace(Settings.from_env(), storage_connection_string=conn, max_retries=2))
    ports.forget(conn)


class Calls:
    """The calls made on one in-memory table, by method name (a call the table makes of itself, as
    its `write` of `transact`, is not one more)."""

    def __init__(self, table: MemoryTable) -> None:
        self.made: list[str] = []
        self._inside = False
        for name in ("get", "write", "transact"):
            setattr(table, name, self._counted(name, getattr(table, name)))

    def _counted(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self._inside:
                return call(*args, **kwargs)
            self.made.append(name)
            self._inside = True
            try:
                return call(*args, **kwargs)
            finally:
                self._inside = False
        return counted

    def take(self) -> list[str]:
        made, self.made = self.made, []
        return made


def test_a_pass_reads_the_packing_from_the_nodes_it_gave_jobs(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    clusters = Calls(world.port.table(storage.T_CLUSTERS))
    first, second = world.submit("first"), world.submit("second", at=1)
    assert [p.job_key for p in scheduling.run_pass(world.settings, world.key, T0).assigned] == [first.key]
    assert clusters.take() == ["get"]  # no node recorded the packing yet
    assert world.node_row(n1)["packing"] == "whole-node"
    assert scheduling.run_pass(world.settings, world.key, T0).assigned == []  # n1 is busy: no room
    assert clusters.take() == []
    assert world.node_row(n1)["jobKey"] == first.key and world.pending_keys() == [second.key]


def test_gpu_slots_recorded_on_the_node_packs_without_the_cluster_document(world: World) -> None:
    world.cluster_doc(packing="gpu-slots")
    g1 = world.node("g1", gpus=4)
    clusters = Calls(world.port.table(storage.T_CLUSTERS))
    first = world.submit("first", gpus_per_node=1)
    scheduling.run_pass(world.settings, world.key, T0)
    assert clusters.take() == ["get"] and world.node_row(g1)["packing"] == "gpu-slots"
    second = world.submit("second", gpus_per_node=2, at=1)
    assert [p.job_key for p in scheduling.run_pass(world.settings, world.key, T0).assigned] == [second.key]
    assert clusters.take() == []
    assert set(json.loads(world.node_row(g1)["jobs"])) == {first.key, second.key}


def test_nodes_that_disagree_on_the_packing_send_the_pass_to_the_cluster_document(world: World) -> None:
    world.cluster_doc()
    n1, n2 = world.node("n1"), world.node("n2")
    world.sched.write(Merge(world.key, sched_store.node_row(n1), {"packing": "gpu-slots"}, None))
    world.sched.write(Merge(world.key, sched_store.node_row(n2), {"packing": "whole-node"}, None))
    clusters = Calls(world.port.table(storage.T_CLUSTERS))
    jobs = [world.submit(f"j{i}", at=i) for i in range(3)]
    assert len(scheduling.run_pass(world.settings, world.key, T0).assigned) == 2  # whole-node: one job a node
    assert clusters.take() == ["get"] and world.pending_keys() == [jobs[2].key]


def test_a_pass_with_nothing_pending_reads_no_cluster_document(world: World) -> None:
    world.cluster_doc()
    world.node("n1")
    clusters = Calls(world.port.table(storage.T_CLUSTERS))
    assert scheduling.run_pass(world.settings, world.key, T0).assigned == []
    assert clusters.take() == []


def test_a_one_task_end_writes_only_its_release(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("one")
    scheduling.run_pass(world.settings, world.key, T0)
    asg = world.asg(job)
    assert asg is not None
    sched = Calls(world.sched)
    event = world.event("task-exited", n1, job, asg.assignment_id, exit_code=0, at=T0)
    assert task_events.handle_task_event(world.settings, event, T0) == "succeeded"
    assert [c for c in sched.take() if c != "get"] == ["transact"]  # the release; no task result written first
    assert world.asg(job) is None and world.node_row(n1)["state"] == "idle"
    assert task_events.handle_task_event(world.settings, event, T0) == "stale"  # redelivered: nothing again
    assert world.internal(job)["phase"] == "succeeded"


def test_a_gang_task_end_records_its_result_first(world: World) -> None:
    world.cluster_doc()
    n1, n2 = world.node("n1"), world.node("n2")
    job = world.submit("gang", node_count=2)
    scheduling.run_pass(world.settings, world.key, T0)
    asg = world.asg(job)
    assert asg is not None
    sched = Calls(world.sched)
    worker = world.event("task-exited", asg.node_ids[1], job, asg.assignment_id, task_index=1, exit_code=0, at=T0)
    assert task_events.handle_task_event(world.settings, worker, T0) == "recorded"  # the master runs on
    assert [c for c in sched.take() if c != "get"] == ["write"]  # its result, which decides with the others'
    recorded = world.asg(job)
    assert recorded is not None and set(recorded.tasks) == {"1"} and {n1, n2} == set(asg.node_ids)

