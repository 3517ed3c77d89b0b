"""Scale and survive, end to end on the local stack through the official SDK: autoscaling up and back
to zero without touching busy nodes, a node killed while its job runs (its agent -9, or its
machine), and low-priority preemption (the local notice, or Azure's eviction with its Scheduled
Events notice), in both topologies; a failing node setup task, manual scale-down with each
nodeDeallocationOption, and the usages the service reports for the nodes it runs (processes)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from azure.mgmt.batchai import BatchAI, models

from tests.e2e.conftest import NODE_BOOT_S, PROCESSES, Stack, StaticToken, wait_until

pytestmark = pytest.mark.slow

WS, EXP = "scale", "survive"
PROCESSES_ONLY = pytest.mark.parametrize("stack", [PROCESSES], indirect=True)


# --- helpers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s(stack: Stack) -> Stack:
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    return stack


def runs_script(runs: str, finish_from_run: int) -> str:
    """A job command that records each run (its pid in `<runs>/run<n>`, `runs` as nodes see it); run
    number `finish_from_run` (0-based) and later exit 0 at once, earlier runs wait (at most 2 min) for
    `<runs>/stop`, then exit 0."""
    return (f'd="{runs}"; n=$(ls "$d" | grep -c "^run"); echo $$ > "$d/run$n"; echo "run $n"; '
            f'if [ "$n" -ge {finish_from_run} ]; then exit 0; fi; '
            f'for i in $(seq 600); do [ -e "$d/stop" ] && exit 0; sleep 0.2; done; exit 9')


def job(s: Stack, name: str) -> models.Job:
    return s.client.jobs.get(s.rg, WS, EXP, name)


def job_nodes(s: Stack, name: str) -> list[str]:
    return [x.node_id for x in s.client.jobs.list_remote_login_information(s.rg, WS, EXP, name)]


def running_on(s: Stack, name: str, not_on: set[str] | frozenset[str] = frozenset()) -> list[str] | None:
    """The nodes of the job once it runs (on none of `not_on`), else None."""
    if job(s, name).execution_state != "running":
        return None
    nodes = job_nodes(s, name)
    return nodes if nodes and not set(nodes) & set(not_on) else None


def run_started(s: Stack, name: str, runs: Path, n: int, not_on: set[str] | frozenset[str] = frozenset()
                ) -> list[str]:
    """Wait for run `n` of a `runs_script` job to have started (its task runs, not just assigned);
    its nodes. The deadline is a node's boot: a run after an eviction may wait for a new machine."""
    def started() -> list[str] | None:
        nodes = running_on(s, name, not_on)
        return nodes if nodes and (runs / f"run{n}").exists() else None

    return wait_until(started, NODE_BOOT_S, what=f"run {n} of {name} to start")


def cluster_nodes(s: Stack, ws: str, cluster: str) -> set[str]:
    return {x.node_id for x in s.client.clusters.list_remote_login_information(s.rg, ws, cluster)}


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def errors_of(j: models.Job) -> list[models.BatchAIError]:
    return list((j.execution_info.errors if j.execution_info else None) or [])


def scale_to(s: Stack, cluster: str, nodes: int, option: str = "requeue") -> None:
    s.client.clusters.update(s.rg, WS, cluster, models.ClusterUpdateParameters(scale_settings=models.ScaleSettings(
        manual=models.ManualScaleSettings(target_node_count=nodes, node_deallocation_option=option))))


def runs_of(s: Stack, function: str) -> int:
    """How many times the stack's host has run `function` through (its log)."""
    return (s.state_dir / "logs" / "host.log").read_text(errors="replace").count(f"Executed '{function}' (")


def holds_through(s: Stack, predicate: Any, functions: tuple[str, ...], runs: int, what: str) -> None:
    """Assert `predicate()` holds on every sample until each of the host's `functions` (the triggers that
    could break it) has run `runs` more times."""
    start = {f: runs_of(s, f) for f in functions}

    def through() -> bool:
        assert predicate(), what
        return all(runs_of(s, f) >= start[f] + runs for f in functions)
    wait_until(through, 300, what=f"{runs} more runs of {', '.join(functions)}", interval=0.5)


# --- 1. autoscale ------------------------------------------------------------------------------

@dataclass
class Samples:
    max_nodes: int = 0
    allocation: list[tuple[str, datetime]] = field(default_factory=list)  # (state, transition time) changes
    ran_on: dict[str, set[str]] = field(default_factory=dict)  # job -> nodes seen running it
    first_absent: dict[str, float] = field(default_factory=dict)  # node -> first time it was gone
    seen: set[str] = field(default_factory=set)
    ended_at: dict[str, float] = field(default_factory=dict)  # job -> first time it was seen ended


def test_autoscale_up_to_max_and_back_to_zero_never_removing_a_busy_node(s: Stack) -> None:
    s.client.clusters.begin_create(s.rg, WS, "auto", models.ClusterCreateParameters(
        vm_size="STANDARD_D1_V2", user_account_settings=models.UserAccountSettings(admin_user_name="demo"),
        scale_settings=models.ScaleSettings(auto_scale=models.AutoScaleSettings(
            minimum_node_count=0, maximum_node_count=2, initial_node_count=0)))).result()
    c = wait_until(lambda: (c := s.client.clusters.get(s.rg, WS, "auto")).allocation_state == "steady" and c, 300,
                   what="the empty autoscale cluster to be steady")
    assert c.current_node_count == 0
    created_steady_at = c.allocation_state_transition_time

    names = [f"auto{i}" for i in range(4)]
    for name in names:
        s.submit(WS, EXP, name, "auto", "sleep 3")
    samples = Samples()

    def sample() -> bool:
        now = time.monotonic()
        c = s.client.clusters.get(s.rg, WS, "auto")
        samples.max_nodes = max(samples.max_nodes, c.current_node_count)
        if not samples.allocation or samples.allocation[-1][0] != c.allocation_state:
            samples.allocation.append((c.allocation_state, c.allocation_state_transition_time))
        present = cluster_nodes(s, WS, "auto")
        samples.seen |= present
        for node in samples.seen - present:
            samples.first_absent.setdefault(node, now)
        ended = 0
        for name in names:
            state = job(s, name).execution_state
            if state == "running":
                samples.ran_on.setdefault(name, set()).update(job_nodes(s, name))
            if state in ("succeeded", "failed"):
                samples.ended_at.setdefault(name, now)
                ended += 1
        return ended == len(names) and c.current_node_count == 0 and c.allocation_state == "steady"

    wait_until(sample, 900, interval=0.3, what="4 jobs to end and the cluster to return to 0 nodes")

    for name in names:
        j = job(s, name)
        assert j.execution_state == "succeeded", (name, errors_of(j))
        assert not errors_of(j), (name, [(e.code, e.message) for e in errors_of(j)])  # never requeued
    assert samples.max_nodes == 2
    assert len(samples.seen) == 2 and set().union(*samples.ran_on.values()) <= samples.seen
    for name, nodes in samples.ran_on.items():
        for node in nodes:  # a node that ran a job was still there when the job was seen ended
            assert samples.first_absent.get(node, float("inf")) >= samples.ended_at[name], (name, node)
    states = [state for state, _ in samples.allocation]
    assert "resizing" in states and states[-1] == "steady"
    resizing_at = next(at for state, at in samples.allocation if state == "resizing")
    assert created_steady_at < resizing_at < samples.allocation[-1][1]
    end = max(job(s, n).execution_info.end_time for n in names)
    assert samples.allocation[-1][1] > end  # steady again only once the idle nodes were removed


# --- 2. a node agent killed while its job runs --------------------------------------------------

def test_killed_node_job_is_requeued_and_succeeds_on_another_node(s: Stack) -> None:
    s.manual_cluster(WS, "kill", 2)
    s.idle_nodes(WS, "kill", 2)
    runs, on_nodes = s.scratch("runs")
    try:
        s.submit(WS, EXP, "victim", "kill", runs_script(on_nodes, finish_from_run=1))
        first = run_started(s, "victim", runs, 0)
        assert len(first) == 1
        s.kill_node(WS, "kill", first[0])

        j = s.wait_job(WS, EXP, "victim", timeout=900)
        assert j.execution_state == "succeeded", [(e.code, e.message) for e in errors_of(j)]
        assert j.execution_info.exit_code == 0
        lost = [e for e in errors_of(j) if e.code == "NodeLost"]
        assert len(lost) == 1 and first[0] in lost[0].message, [(e.code, e.message) for e in errors_of(j)]
        assert sorted(p.name for p in runs.iterdir()) == ["run0", "run1"]
        assert first[0] not in cluster_nodes(s, WS, "kill")  # the lost node is gone, with its processes
        if s.topology == PROCESSES:  # a machine takes its processes with it; an agent's are ended for it
            orphan = int((runs / "run0").read_text())
            wait_until(lambda: process_gone(orphan), 300, what="the task the killed agent left to be ended")
        wait_until(lambda: s.client.clusters.get(s.rg, WS, "kill").node_state_counts.idle_node_count == 2, 900,
                   what="the killed node to be replaced")
    finally:
        (runs / "stop").touch()  # the orphaned first run exits


# --- 3. a node setup task that fails ------------------------------------------------------------

@PROCESSES_ONLY
def test_failed_setup_task_leaves_the_node_unusable_and_gets_no_job(s: Stack) -> None:
    s.manual_cluster(WS, "badsetup", 1, node_setup=models.NodeSetup(setup_task=models.SetupTask(
        command_line="echo setting up; exit 7", std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/setup")))

    def unusable() -> models.Cluster | None:
        c = s.client.clusters.get(s.rg, WS, "badsetup")
        return c if c.node_state_counts.unusable_node_count == 1 and c.errors else None

    c = wait_until(unusable, 300, what="the node to become unusable")
    assert c.node_state_counts.idle_node_count == 0 and c.current_node_count == 1
    assert [e.code for e in c.errors] == ["SetupTaskFailed"]
    assert "exited with code 7" in c.errors[0].message

    s.submit(WS, EXP, "nowhere", "badsetup", "echo should not run")
    holds_through(s, lambda: job(s, "nowhere").execution_state == "queued" and not job_nodes(s, "nowhere"),
                  ("scheduling_safety_pass", "schedule_kick"), 2, "a job was given to an unusable node")
    c = s.client.clusters.get(s.rg, WS, "badsetup")
    assert c.node_state_counts.unusable_node_count == 1 and c.node_state_counts.running_node_count == 0
    s.client.jobs.begin_delete(s.rg, WS, EXP, "nowhere").result()


# --- 4. low-priority preemption -----------------------------------------------------------------

def test_preemptions_requeue_without_using_retries_and_the_job_succeeds(s: Stack) -> None:
    preemptions = s.max_retries + 1  # one more than the retry limit: counted retries would fail the job
    s.manual_cluster(WS, "spot", 2, vm_priority="lowpriority")
    s.idle_nodes(WS, "spot", 2)
    runs, on_nodes = s.scratch("runs")
    try:
        s.submit(WS, EXP, "evicted", "spot", runs_script(on_nodes, finish_from_run=preemptions))
        gone: set[str] = set()
        for n in range(preemptions):
            nodes = run_started(s, "evicted", runs, n, gone)
            s.evict(WS, "spot", nodes[0])
            gone.add(nodes[0])
            wait_until(lambda n=n: len(errors_of(job(s, "evicted"))) == n + 1, 300, what=f"requeue {n}")
        j = s.wait_job(WS, EXP, "evicted", timeout=900)
        codes = [(e.code, e.message) for e in errors_of(j)]
        assert j.execution_state == "succeeded" and j.execution_info.exit_code == 0, codes
        assert [c for c, _ in codes] == ["Preempted"] * preemptions, codes
        assert all("preempted" in m for _, m in codes)
        assert len(list(runs.glob("run*"))) == preemptions + 1
    finally:
        (runs / "stop").touch()


# --- 5. manual scale-down with each nodeDeallocationOption --------------------------------------

@PROCESSES_ONLY
def test_manual_scale_down_honours_node_deallocation_option(s: Stack) -> None:
    options = ("requeue", "terminate", "waitforjobcompletion")
    scratch = {o: s.scratch(o) for o in options}
    runs = {o: here for o, (here, _) in scratch.items()}
    clusters = {o: f"down-{o[:4]}" for o in options}
    try:
        for option in options:
            s.manual_cluster(WS, clusters[option], 1)
        for option in options:
            s.idle_nodes(WS, clusters[option], 1)
            s.submit(WS, EXP, f"held-{option[:4]}", clusters[option],
                     runs_script(scratch[option][1], finish_from_run=1))
        first = {o: run_started(s, f"held-{o[:4]}", runs[o], 0) for o in options}
        for option in options:
            scale_to(s, clusters[option], 0, option)

        # requeue: the job goes back to the queue (no retry counted) and the node is removed at once.
        requeued = wait_until(lambda: (j := job(s, "held-requ")).execution_state == "queued" and errors_of(j) and j,
                              60, what="the requeue")
        assert [e.code for e in errors_of(requeued)] == ["NodeRemoved"]
        assert "requeue" in errors_of(requeued)[0].message
        wait_until(lambda: s.client.clusters.get(s.rg, WS, clusters["requeue"]).current_node_count == 0, 300,
                   what="the requeue cluster to be empty")
        assert job(s, "held-requ").execution_state == "queued"

        # terminate: the job fails as terminated, the node goes.
        terminated = s.wait_job(WS, EXP, "held-term", timeout=900)
        assert terminated.execution_state == "failed"
        assert [e.code for e in errors_of(terminated)] == ["JobTerminated"], errors_of(terminated)
        assert "terminate" in errors_of(terminated)[0].message
        wait_until(lambda: s.client.clusters.get(s.rg, WS, clusters["terminate"]).current_node_count == 0, 300,
                   what="the terminate cluster to be empty")

        # waitforjobcompletion: the node leaves only once its job has ended; the job is left alone.
        wait = clusters["waitforjobcompletion"]
        holds_through(s, lambda: job(s, "held-wait").execution_state == "running"
                      and s.client.clusters.get(s.rg, WS, wait).current_node_count == 1,
                      ("cluster_reconcile", "node_reaper"), 3,
                      "waitforjobcompletion stopped the job or removed its node")
        c = s.client.clusters.get(s.rg, WS, wait)
        assert c.allocation_state == "resizing" and c.node_state_counts.leaving_node_count == 1
        (runs["waitforjobcompletion"] / "stop").touch()
        waited = s.wait_job(WS, EXP, "held-wait", timeout=900)
        assert waited.execution_state == "succeeded" and not errors_of(waited)
        c = wait_until(lambda: (c := s.client.clusters.get(s.rg, WS, wait)).current_node_count == 0
                       and c.allocation_state == "steady" and c, 60, what="the node to leave after its job")
        assert c.allocation_state_transition_time > waited.execution_info.end_time

        # The requeued job runs again once its cluster has a node, and succeeds.
        scale_to(s, clusters["requeue"], 1)
        again = s.wait_job(WS, EXP, "held-requ", timeout=900)
        assert again.execution_state == "succeeded", errors_of(again)
        assert [e.code for e in errors_of(again)] == ["NodeRemoved"]
        assert first["requeue"][0] not in job_nodes(s, "held-requ")
    finally:
        for path in runs.values():
            path.mkdir(parents=True, exist_ok=True)
            (path / "stop").touch()


# --- 6. usages ----------------------------------------------------------------------------------

@PROCESSES_ONLY
def test_usages_report_nodes_cores_per_family_against_limits(s: Stack) -> None:
    sub = str(uuid.uuid4())  # a subscription of its own: the counts are this test's alone
    client = BatchAI(StaticToken(s.endpoint["token"]), sub, base_url=s.endpoint["url"],
                     connection_verify=s.endpoint["ca_file"])
    client.workspaces.begin_create(s.rg, "use", models.WorkspaceCreateParameters(location="local")).result()
    user = models.UserAccountSettings(admin_user_name="demo")
    for name, size, priority, nodes in (("cpu", "STANDARD_D1_V2", "dedicated", 2),
                                        ("gpu", "STANDARD_NC6", "lowpriority", 1)):
        client.clusters.begin_create(s.rg, "use", name, models.ClusterCreateParameters(
            vm_size=size, vm_priority=priority, user_account_settings=user,
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=nodes)))).result()

    def usages() -> dict[str, models.Usage]:
        return {u.name.value: u for u in client.usages.list("local")}

    def ready() -> bool:
        return all(client.clusters.get(s.rg, "use", c).node_state_counts.idle_node_count == n
                   for c, n in (("cpu", 2), ("gpu", 1)))

    wait_until(ready, 300, what="3 idle nodes")
    u = usages()
    for usage in u.values():
        assert usage.unit == "Count" and usage.name.localized_value
        assert isinstance(usage.current_value, int) and isinstance(usage.limit, int)
    current = {name: usage.current_value for name, usage in u.items() if usage.current_value}
    assert current == {"Clusters": 2,
                       "Total Cluster Dedicated Regional vCPUs": 2,  # 2 x D1_v2 (1 vCPU)
                       "Standard Dv2 Family Cluster Dedicated vCPUs": 2,
                       "Total Cluster LowPriority Regional vCPUs": 6,  # 1 x NC6 (6 vCPUs)
                       "Standard NC Family Cluster LowPriority vCPUs": 6}
    assert u["Clusters"].limit == int(os.environ.get("BATCHAI_QUOTA_CLUSTERS", "20"))
    assert u["Total Cluster Dedicated Regional vCPUs"].limit == int(os.environ.get("BATCHAI_QUOTA_DEDICATED_CORES",
                                                                                   "600"))
    assert u["Standard NC Family Cluster LowPriority vCPUs"].name.localized_value == \
        "Standard NC Family Cluster Low Priority vCPUs"
    for family in ("D", "Dv2", "NC", "NCv2", "NCv3", "ND", "NV"):  # the families Batch AI listed
        assert f"Standard {family} Family Cluster Dedicated vCPUs" in u
        assert f"Standard {family} Family Cluster LowPriority vCPUs" in u

    # Nodes scaled away stop counting; the cluster still counts.
    client.clusters.update(s.rg, "use", "gpu", models.ClusterUpdateParameters(scale_settings=models.ScaleSettings(
        manual=models.ManualScaleSettings(target_node_count=0))))
    wait_until(lambda: usages()["Total Cluster LowPriority Regional vCPUs"].current_value == 0, 300,
               what="the low-priority cores to be released")
    u = usages()
    assert u["Standard NC Family Cluster LowPriority vCPUs"].current_value == 0
    assert u["Standard Dv2 Family Cluster Dedicated vCPUs"].current_value == 2 and u["Clusters"].current_value == 2
    client.workspaces.begin_delete(s.rg, "use").result()
