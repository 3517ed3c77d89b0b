"""Manual scale-down of busy nodes (nodeDeallocationOption) and node loss, with the real scheduling
pass and job services: jobs are stored as the API stores them and assigned by `run_pass`."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import JobRef
from shared.domain.messages import NodeEvent, parse_node_message
from shared.services import job_state, nodes
from shared.services.cluster_reconcile import reconcile_cluster
from shared.services.nodes import handle_node_event
from shared.services.reaper import reap_cluster
from shared.services.scheduling import run_pass
from shared.services.task_events import handle_task_event
from tests.nodes.helpers import cluster_ref, put_cluster, stand_in, wait_until

T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture()
def settings(storage_conn: str, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local", heartbeat_timeout_s=15.0)
    yield s
    stop_all(s.state_dir, grace_s=2.0)


@pytest.fixture()
def provider(settings: Settings) -> LocalProvider:
    return LocalProvider(settings.state_dir, settings.storage_connection_string, command=stand_in,
                         leave_wait_s=0.3, grace_s=2.0)


def submit(settings: Settings, cluster, name: str, at: datetime) -> JobRef:
    """A job as the API stores it, then put in the cluster's pending index."""
    ref = cluster.workspace.experiment("exp").job(name)
    data = {"id": ref.arm_id, "name": name, "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
            "properties": {"cluster": {"id": cluster.arm_id}, "nodeCount": 1, "schedulingPriority": "normal",
                           "customToolkitSettings": {"commandLine": "sleep 100"},
                           "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                           "jobOutputDirectoryPathSegment": f"seg-{name}", "provisioningState": "succeeded"},
            "internal": {"phase": "queued", "history": [], "attempt": 1, "retries": 0, "clusterKey": cluster.key,
                         "submittedAt": at.isoformat(), "assignmentId": None, "executionInfo": {}}}
    ResourceStore(settings.storage_connection_string, storage.T_JOBS).insert(ref.experiment.job_pk, name.lower(), data)
    sched_store.add_pending(settings.storage_connection_string, cluster.key, ref.key, "normal", at, 1)
    return ref


def internal_of(settings: Settings, ref: JobRef) -> dict:
    return job_state.get(settings, ref).data["internal"]


def cluster_with_busy_node(settings: Settings, provider: LocalProvider, name: str, option: str, t0: datetime = T0):
    """A manual cluster of 2 idle nodes; one of them then runs a job."""
    cluster = cluster_ref(name)
    put_cluster(settings.storage_connection_string, cluster,
                {"manual": {"targetNodeCount": 2, "nodeDeallocationOption": option}})
    ids = reconcile_cluster(settings, cluster, t0, provider).adopted
    for node_id in ids:
        for kind in ("node-registered", "node-ready"):
            handle_node_event(settings, NodeEvent(kind, cluster.key, node_id, t0.isoformat(),
                                                  inventory={"cores": 2, "memoryMb": 1024, "gpus": 0}),
                              t0 - timedelta(seconds=100))
    job = submit(settings, cluster, f"{name}-job", t0)
    assert len(run_pass(settings, cluster.key, t0).assigned) == 1
    busy = [i for i in ids if nodes.get_node(settings, cluster.key, i)["state"] == "running"]
    assert len(busy) == 1
    return cluster, job, busy[0], next(i for i in ids if i != busy[0])


def beat(settings: Settings, cluster_key: str, node_id: str) -> None:
    """A heartbeat as the node agent writes it (its time is the storage server's)."""
    storage.container(settings.storage_connection_string, storage.C_HEARTBEATS).upload_blob(
        storage.heartbeat_blob(cluster_key, node_id), b"", overwrite=True, metadata={"pid": "1"})


def lower_to_zero(settings: Settings, cluster, option: str) -> None:
    put_cluster(settings.storage_connection_string, cluster,
                {"manual": {"targetNodeCount": 0, "nodeDeallocationOption": option}})


def node_messages(settings: Settings, node_id: str) -> list:
    q = storage.queue(settings.storage_connection_string, storage.node_queue_name(node_id))
    return [parse_node_message(m.content) for m in q.peek_messages(max_messages=32)]


def test_requeue_option(settings: Settings, provider: LocalProvider):
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "dealloc-rq", "requeue")
    assignment = internal_of(settings, job)["assignmentId"]
    lower_to_zero(settings, cluster, "requeue")
    result = reconcile_cluster(settings, cluster, T0 + timedelta(seconds=5), provider)
    assert sorted(result.removed) == sorted([busy, idle])
    state = internal_of(settings, job)
    assert state["phase"] == "queued" and state["attempt"] == 2 and state["retries"] == 0
    assert state["executionInfo"]["errors"][-1]["code"] == "NodeRemoved"
    pending = [r for r in sched_store.partition(settings.storage_connection_string, cluster.key)
               if r["RowKey"].startswith(sched_store.PENDING)]
    assert [r["jobKey"] for r in pending] == [job.key]
    assert any(m.kind == "stop" and m.assignment_id == assignment for m in node_messages(settings, busy))
    wait_until(lambda: not provider.list_instances(cluster.key))
    reconcile_cluster(settings, cluster, T0 + timedelta(seconds=10), provider)
    assert nodes.node_rows(sched_store.partition(settings.storage_connection_string, cluster.key)) == []


def test_terminate_option(settings: Settings, provider: LocalProvider):
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "dealloc-tm", "terminate")
    lower_to_zero(settings, cluster, "terminate")
    result = reconcile_cluster(settings, cluster, T0 + timedelta(seconds=5), provider)
    assert sorted(result.removed) == sorted([busy, idle])
    assert internal_of(settings, job)["phase"] == "terminating"
    assert any(m.kind == "stop" for m in node_messages(settings, busy))


def test_waitforjobcompletion_option(settings: Settings, provider: LocalProvider):
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "dealloc-wait", "waitforjobcompletion")
    lower_to_zero(settings, cluster, "waitforjobcompletion")
    result = reconcile_cluster(settings, cluster, T0 + timedelta(seconds=5), provider)
    assert result.removed == [idle]
    assert nodes.get_node(settings, cluster.key, busy)["state"] == "leaving"
    assert internal_of(settings, job)["phase"] == "assigned"
    # Ticks while the job runs keep the node (and the cluster resizing).
    again = reconcile_cluster(settings, cluster, T0 + timedelta(seconds=6), provider)
    assert busy not in again.removed and again.allocation_state == "resizing"
    assert busy in {i.node_id for i in provider.list_instances(cluster.key)}
    # The job ends: the node leaves on the next tick.
    assignment = internal_of(settings, job)["assignmentId"]
    handle_task_event(settings, NodeEvent("task-exited", cluster.key, busy, T0.isoformat(), assignment_id=assignment,
                                          job_key=job.key, task_index=0, exit_code=0), T0 + timedelta(seconds=7))
    assert internal_of(settings, job)["phase"] == "succeeded"
    row = nodes.get_node(settings, cluster.key, busy)
    assert row["state"] == "leaving" and not row["jobKey"]
    assert reconcile_cluster(settings, cluster, T0 + timedelta(seconds=8), provider).removed == [busy]
    wait_until(lambda: not provider.list_instances(cluster.key))


def test_reaper_requeues_the_job_of_a_lost_node(settings: Settings, provider: LocalProvider):
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "lost1", "requeue")
    assignment = internal_of(settings, job)["assignmentId"]
    handle_task_event(settings, NodeEvent("task-started", cluster.key, busy, T0.isoformat(), assignment_id=assignment,
                                          job_key=job.key, task_index=0), T0)  # it ran: losing it costs a retry
    beat(settings, cluster.key, idle)  # now, after T0; the busy node never beat since it registered at T0 - 100 s
    result = reap_cluster(settings, cluster.key, T0)
    assert result.lost == [busy]
    state = internal_of(settings, job)
    assert state["phase"] == "queued" and state["retries"] == 1
    error = state["executionInfo"]["errors"][-1]
    assert error["code"] == "NodeLost"
    assert error["message"] == f"node {busy} lost: no heartbeat since {(T0 - timedelta(seconds=100)).isoformat()}"
    assert nodes.get_node(settings, cluster.key, busy) is None
    assert nodes.get_node(settings, cluster.key, idle)["state"] == "idle"
    wait_until(lambda: busy not in {i.node_id for i in provider.list_instances(cluster.key)})
    # The reconciler brings the cluster back to its target.
    assert len(reconcile_cluster(settings, cluster, T0, provider).adopted) == 1


def test_walltime_overrun_is_terminated(settings: Settings, provider: LocalProvider):
    # The job starts 40 s before now, so that heartbeats written now (server time) are fresh at +40 and +46.
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "wall1", "requeue", t0)
    store = ResourceStore(settings.storage_connection_string, storage.T_JOBS)
    doc = store.get(job.experiment.job_pk, job.name.lower())
    props = {**doc.data["properties"], "constraints": {"maxWallClockTime": "PT30S"}}
    store.replace(doc, {**doc.data, "properties": props})

    def reap_at(seconds: int):
        for node_id in (busy, idle):  # the nodes are alive: only the wall clock matters
            beat(settings, cluster.key, node_id)
        result = reap_cluster(settings, cluster.key, t0 + timedelta(seconds=seconds))
        assert result.lost == []
        return result

    assert reap_at(40).walltime == []  # past the limit, within the grace the agent has to stop it
    result = reap_at(46)
    assert result.walltime == [job.key]
    state = internal_of(settings, job)
    assert state["phase"] == "terminating" and state["stopReason"] == "walltime"
    assert any(m.kind == "stop" and m.reason == "walltime" for m in node_messages(settings, busy))
    assert json.loads(nodes.get_node(settings, cluster.key, busy)["history"])[-1]["to"] == "running"


def test_preempted_node_requeues_without_counting_a_retry(settings: Settings, provider: LocalProvider):
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "preempt1", "requeue")
    event = NodeEvent("node-preempted", cluster.key, busy, T0.isoformat())
    handle_node_event(settings, event, T0)
    handle_node_event(settings, event, T0)  # delivered twice: harmless
    row = nodes.get_node(settings, cluster.key, busy)
    assert row["state"] == "leaving" and row["leavingReason"] == "preempted" and not row["jobKey"]
    state = internal_of(settings, job)
    assert state["phase"] == "queued" and state["retries"] == 0 and state["attempt"] == 2
    assert state["executionInfo"]["errors"][-1]["code"] == "Preempted"
    wait_until(lambda: busy not in {i.node_id for i in provider.list_instances(cluster.key)})
    result = reconcile_cluster(settings, cluster, T0, provider)
    assert result.dropped == [busy] and len(result.adopted) == 1  # replaced: the target is 2
