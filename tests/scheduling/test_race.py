"""Many scheduling passes at once over one partition: no node over-committed, no job assigned twice."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from shared.adapters import sched_store
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
    assert len(committed) == 3
    assert sum(r.conflicts for r in results) >= 1  # the passes did collide, and lost cleanly
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
