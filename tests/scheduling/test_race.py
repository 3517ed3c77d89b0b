"""Many scheduling passes at once over one partition: no node over-committed, no job assigned twice."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from shared.adapters import sched_store
from shared.decisions.scheduler import WHOLE_NODE, schedule
from shared.domain.messages import Assignment
from shared.services import scheduling, task_events
from tests.scheduling.conftest import T0, World


def _race(world: World, passes: int) -> list[scheduling.PassResult]:
    start = threading.Barrier(passes)

    def one_pass() -> scheduling.PassResult:
        start.wait()  # every pass reads the partition at about the same time
        return scheduling.run_pass(world.settings, world.key, T0)

    with ThreadPoolExecutor(max_workers=passes) as pool:
        futures = [pool.submit(one_pass) for _ in range(passes)]
        return [f.result() for f in futures]


def test_twenty_concurrent_passes_never_over_commit(world: World) -> None:
    world.cluster_doc()
    nodes = [world.node(f"n{i}") for i in range(3)]
    jobs = [world.submit(f"j{i}", at=i) for i in range(10)]

    results = _race(world, 20)

    committed = [p for r in results for p in r.assigned]
    assert len(committed) == 3  # however the passes interleaved (whether any collided depends on it)
    rows = world.rows()
    asgs = {r["jobKey"]: r for r in rows if r["RowKey"].startswith(sched_store.ASSIGNMENT)}
    assert sorted(asgs) == sorted(j.key for j in jobs[:3])  # the three oldest, once each
    assert sorted(world.pending_keys()) == sorted(j.key for j in jobs[3:])
    holders = {n: world.node_row(n) for n in nodes}
    assert sorted(r["jobKey"] for r in holders.values()) == sorted(asgs)
    for row in holders.values():
        assert row["state"] == "running" and row["assignmentId"] == asgs[row["jobKey"]]["assignmentId"]
    messages = {n: world.messages(n) for n in nodes}
    assert all(len(m) == 1 and isinstance(m[0], Assignment) for m in messages.values())
    sent = Counter(m[0].job_key for m in messages.values())
    assert all(count == 1 for count in sent.values()) and set(sent) == set(asgs)
    for node_id, (message,) in messages.items():
        assert message.assignment_id == holders[node_id]["assignmentId"]
    for job in jobs[:3]:
        assert world.internal(job)["phase"] == "assigned"
    for job in jobs[3:]:
        assert world.internal(job)["phase"] == "queued"


def test_a_pass_that_decided_on_a_stale_read_commits_nothing(world: World) -> None:
    world.cluster_doc()
    nodes = [world.node(f"n{i}") for i in range(2)]
    for i in range(3):
        world.submit(f"j{i}", at=i)
    stale = scheduling.read_pass_snapshot(world.settings, world.key)
    winner = scheduling.run_pass(world.settings, world.key, T0)  # another pass commits first
    assert len(winner.assigned) == 2
    before = {r["RowKey"]: r.etag for r in world.rows()}
    reply = schedule(scheduling.request_for(stale, WHOLE_NODE, T0, lambda: uuid.uuid4().hex))
    assert {p.node_ids[0] for p in reply.assignments} == set(nodes)  # it would take the same nodes
    assert scheduling._commit(world.settings, stale, world.key, reply.assignments, T0, WHOLE_NODE) is None
    assert {r["RowKey"]: r.etag for r in world.rows()} == before  # all or nothing: nothing


def test_racing_passes_while_jobs_finish_assign_every_job_once(world: World) -> None:
    world.cluster_doc()
    nodes = [world.node(f"n{i}") for i in range(3)]
    jobs = [world.submit(f"j{i}", at=i) for i in range(10)]
    seen: Counter[str] = Counter()
    for _round in range(6):
        _race(world, 8)
        for node_id in nodes:
            for message in world.messages(node_id):
                seen[message.job_key] += 1
                ref = next(j for j in jobs if j.key == message.job_key)
                task_events.handle_task_event(world.settings, world.event(
                    "task-exited", node_id, ref, message.assignment_id, exit_code=0), T0 + timedelta(seconds=1))
        if all(world.internal(j)["phase"] == "succeeded" for j in jobs):
            break
    assert all(world.internal(j)["phase"] == "succeeded" for j in jobs)
    assert seen == Counter({j.key: 1 for j in jobs})
    assert all(world.node_row(n)["state"] == "idle" for n in nodes)
    assert world.pending_keys() == []
