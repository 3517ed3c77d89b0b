"""Job arrays and dependencies end to end on both topologies: an array of tasks with a bound on how
many run at once (20 with at most 4 on five process nodes; 6 with at most 2 on three machines, each
of which costs a boot) runs each index exactly once (each task leaves a file named by its index on
the cluster share; the bound is checked on the service's own records of its child jobs), and a job
depending on a failed job ends with the dependency's reason while one depending on its mere end runs."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from azure.mgmt.batchai import models

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.cli.arm import properties_hook
from tests.e2e.conftest import MACHINES, PROCESSES, Stack
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", [PROCESSES, MACHINES], indirect=True)]

WS, EXP, CLUSTER = "arrays", "runs", "bounded"
#: topology -> (nodes, array count, at most at once): more nodes than the bound, so only the bound holds tasks back
SIZES = {PROCESSES: (5, 20, 4), MACHINES: (3, 6, 2)}


@pytest.fixture(scope="module")
def s(stack: Stack) -> Iterator[Stack]:
    """The cluster goes with the module, so its nodes do not idle beside later tests."""
    nodes = SIZES[stack.topology][0]
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    stack.manual_cluster(WS, CLUSTER, nodes)
    stack.idle_nodes(WS, CLUSTER, nodes)
    yield stack
    stack.client.clusters.begin_delete(stack.rg, WS, CLUSTER).result()


def submit(s: Stack, name: str, command: str, **links: Any) -> None:
    params = models.JobCreateParameters(
        cluster=models.ResourceId(id=s.cluster_id(WS, CLUSTER)), std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=command))
    s.client.jobs.begin_create(s.rg, WS, EXP, name, params, raw_request_hook=properties_hook(links)).result()


def documents(s: Stack, names: list[str]) -> dict[str, dict[str, Any]]:
    """The service's own job documents (its records of every state move and when)."""
    jobs = ResourceStore(s.service_conn, storage.T_JOBS)
    pk = f"{s.sub}|{s.rg}|{WS}|{EXP}".lower()
    docs = {n: jobs.get(pk, n.lower()) for n in names}
    assert all(docs.values()), [n for n, d in docs.items() if d is None]
    return {n: d.data for n, d in docs.items() if d is not None}


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most half-open intervals [start, end) that hold at one instant."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def moved(internal: dict[str, Any], to: set[str]) -> datetime:
    return datetime.fromisoformat(next(h["at"] for h in internal["history"] if h["to"] in to))


def test_an_array_runs_each_index_once_and_never_more_than_its_bound_at_once(s: Stack) -> None:
    _, count, at_once = SIZES[s.topology]
    here, there = s.scratch("array")
    gate = s.scratch("gate")[0]
    gate.chmod(0o777)
    go = f"$AZ_BATCHAI_MOUNT_ROOT/share/{gate.name}/go"
    # Every child waits for the go file, so the first `at_once` children are all alive at once however slowly
    # a loaded machine creates them; the test lets them go once it has seen `at_once` children.
    submit(s, "sweep", f'while [ ! -e "{go}" ]; do sleep 0.1; done; '
                       f'echo "$AZ_BATCHAI_ARRAY_COUNT" > "$(mktemp "{there}/index-$AZ_BATCHAI_ARRAY_INDEX.XXXXXX")"',
           array={"count": count, "maxConcurrent": at_once})
    children = ResourceStore(s.service_conn, storage.T_JOBS)
    pk = f"{s.sub}|{s.rg}|{WS}|{EXP}".lower()
    wait_until(lambda: all(children.get(pk, f"sweep-{i}") for i in range(at_once)), 300,
               what=f"the first {at_once} children")
    (gate / "go").touch()
    parent = s.wait_job(WS, EXP, "sweep", timeout=900)
    assert parent.execution_state == "succeeded", parent.execution_info.errors

    runs = collections.Counter(int(p.name.split(".")[0].removeprefix("index-")) for p in here.iterdir())
    assert runs == collections.Counter(range(count))  # every index, each exactly once
    assert {p.read_text().strip() for p in here.iterdir()} == {str(count)}

    children = documents(s, [f"sweep-{i}" for i in range(count)])
    assert [c["properties"]["arrayIndex"] for c in children.values()] == list(range(count))
    assert all(c["internal"]["phase"] == "succeeded" for c in children.values())
    ended = {"succeeded", "failed"}
    alive = [(datetime.fromisoformat(c["internal"]["submittedAt"]), moved(c["internal"], ended))
             for c in children.values()]
    # Running: from the handling of a task's start report to the handling of its end. (A pass stamps
    # its assignments with the time it began, which may precede a child written while it ran.)
    running = [(moved(c["internal"], {"running"}), moved(c["internal"], ended)) for c in children.values()
               if any(h["to"] == "running" for h in c["internal"]["history"])]
    assert most_at_once(alive) == at_once  # never more children not ended than the bound, and the bound reached
    assert running and most_at_once(running) <= at_once
    assert s.client.jobs.get(s.rg, WS, EXP, "sweep").execution_info.start_time is not None
    history = documents(s, ["sweep"])["sweep"]["internal"]["history"]
    assert [h["to"] for h in history] == ["running", "succeeded"]


def test_a_job_depending_on_a_failed_job_ends_with_the_dependency_reason(s: Stack) -> None:
    submit(s, "broken", "echo failing on purpose; exit 3")
    submit(s, "train", "echo must not run", dependsOn=[{"job": "broken"}])
    submit(s, "cleanup", "echo cleaning up", dependsOn=[{"job": "broken", "condition": "ended"}])
    assert s.client.jobs.get(s.rg, WS, EXP, "train").execution_state in ("queued", "failed")

    train = s.wait_job(WS, EXP, "train")
    assert train.execution_state == "failed"
    assert [e.code for e in train.execution_info.errors] == ["DependencyFailed"]
    assert "'broken' failed" in train.execution_info.errors[0].message
    assert train.execution_info.start_time is None  # it never ran
    assert s.wait_job(WS, EXP, "cleanup").execution_state == "succeeded"
    broken = s.client.jobs.get(s.rg, WS, EXP, "broken")
    assert broken.execution_info.exit_code == 3
    cleanup = s.client.jobs.get(s.rg, WS, EXP, "cleanup")
    assert cleanup.execution_info.start_time >= broken.execution_info.end_time
