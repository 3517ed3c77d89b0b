"""Deletion: a DELETE records intent (202 + operation) and the reconcile timer's deletion step (run
beside the in-process API) does the cascade; the operation ends once tasks stopped and children are
gone; what a cluster's deletion does to its jobs. Job phases are moved with the scheduler's own
`job_state`, as its task events would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from azure.mgmt.batchai import BatchAI

from shared.adapters import local_paths, storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import JobRef, WorkspaceRef
from shared.services import job_state
from tests.api.conftest import API, unique, wait_until

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 1}}}}
FILESERVER = {"properties": {"vmSize": "STANDARD_D2", "sshConfiguration": {"userAccountSettings": {
    "adminUserName": "u"}}, "dataDisks": {"diskSizeInGB": 1, "diskCount": 1, "storageAccountType": "Standard_LRS"}}}


@pytest.fixture()
def ws(http: httpx.Client, api_endpoint: dict[str, str]) -> Iterator[WorkspaceRef]:
    ref = WorkspaceRef(api_endpoint["subscription_id"], api_endpoint["resource_group"], unique("ws"))
    assert http.put(f"{ref.arm_id}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{ref.arm_id}/clusters/c?{API}", json=CLUSTER).status_code == 200
    assert http.put(f"{ref.arm_id}/experiments/e?{API}", json={}).status_code == 200
    yield ref


def put_job(http: httpx.Client, ws: WorkspaceRef, name: str) -> JobRef:
    body = {"properties": {"cluster": {"id": f"{ws.arm_id}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
                           "customToolkitSettings": {"commandLine": "sleep 1000"}}}
    assert http.put(f"{ws.arm_id}/experiments/e/jobs/{name}?{API}", json=body).status_code == 200
    return ws.experiment("e").job(name)


def start(ref: JobRef) -> None:
    """The job runs, as a scheduling pass and a task-started event would make it."""
    settings, now = Settings.from_env(), datetime.now(UTC)
    job_state.transition(settings, ref, "assigned", "test: assigned", now)
    job_state.transition(settings, ref, "running", "test: started", now)


def stopped(ref: JobRef) -> None:
    """Its tasks report they stopped, as the scheduler's task events would."""
    job_state.transition(Settings.from_env(), ref, "failed", "test: tasks stopped", datetime.now(UTC))


def test_deleting_a_running_job_waits_for_its_tasks(http: httpx.Client, client: BatchAI, ws: WorkspaceRef) -> None:
    ref = put_job(http, ws, "r")
    start(ref)
    url = f"{ref.arm_id}?{API}"
    r = http.delete(url)
    assert r.status_code == 202 and "/operationresults/" in r.headers["Azure-AsyncOperation"]
    assert "/operationstatuses/" in r.headers["Location"] and r.headers["Retry-After"]
    assert http.get(r.headers["Azure-AsyncOperation"]).json()["status"] == "InProgress"
    assert http.get(url).json()["properties"]["provisioningState"] == "deleting"
    job = wait_until(lambda: (p := http.get(url).json()["properties"])["executionState"] == "terminating" and p,
                     what="the deletion to stop the job")
    assert (job["provisioningState"], job["executionState"]) == ("deleting", "terminating")
    assert http.get(r.headers["Location"]).status_code == 202
    stopped(ref)
    wait_until(lambda: http.get(r.headers["Location"]).status_code == 200, what="the deletion to end")
    assert http.get(url).status_code == 404
    assert http.get(r.headers["Location"]).status_code == 200  # a finished operation stays finished
    assert http.get(r.headers["Azure-AsyncOperation"]).json()["status"] == "Succeeded"
    assert http.delete(url).status_code == 204  # nothing left to delete

    other = put_job(http, ws, "r2")
    start(other)
    poller = client.jobs.begin_delete(ws.resource_group, ws.workspace, "e", "r2")
    assert not poller.done()
    stopped(other)
    poller.result(timeout=30)
    assert http.get(f"{other.arm_id}?{API}").status_code == 404


def test_terminating_a_running_job_completes_when_it_ends(http: httpx.Client, client: BatchAI,
                                                          ws: WorkspaceRef) -> None:
    ref = put_job(http, ws, "t")
    start(ref)
    poller = client.jobs.begin_terminate(ws.resource_group, ws.workspace, "e", "t")
    wait_until(lambda: http.get(f"{ref.arm_id}?{API}").json()["properties"]["executionState"] == "terminating")
    assert not poller.done()
    stopped(ref)
    poller.result(timeout=30)
    assert http.get(f"{ref.arm_id}?{API}").json()["properties"]["executionState"] == "failed"


def test_workspace_deletion_cascades(http: httpx.Client, ws: WorkspaceRef) -> None:
    settings = Settings.from_env()
    assert http.put(f"{ws.arm_id}/fileServers/fs?{API}", json=FILESERVER).status_code == 200
    share = local_paths.fileserver_dir(settings.state_dir, f"{ws.arm_id}/fileServers/fs")
    assert share.is_dir()
    queued = put_job(http, ws, "q")
    running = put_job(http, ws, "r")
    start(running)

    r = http.delete(f"{ws.arm_id}?{API}")
    assert r.status_code == 202
    assert http.get(f"{ws.arm_id}?{API}").json()["properties"]["provisioningState"] == "deleting"
    refused = http.put(f"{ws.arm_id}/experiments/e2?{API}", json={})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "ParentResourceBeingDeleted"
    wait_until(lambda: http.get(f"{queued.arm_id}?{API}").status_code == 404, what="the queued job to go")
    wait_until(lambda: http.get(f"{running.arm_id}?{API}").json()["properties"]["executionState"] == "terminating",
               what="the running job to be stopped")
    assert http.get(r.headers["Location"]).status_code == 202

    stopped(running)
    wait_until(lambda: http.get(r.headers["Location"]).status_code == 200, what="the deletion to end")
    conn = settings.storage_connection_string
    for table, pk in [(storage.T_EXPERIMENTS, ws.child_pk), (storage.T_CLUSTERS, ws.child_pk),
                      (storage.T_FILESERVERS, ws.child_pk), (storage.T_WORKSPACES, None)]:
        docs = list(ResourceStore(conn, table).scan(pk=pk or ws.pk))
        assert all(d.rk != ws.workspace.lower() for d in docs) if pk is None else docs == []
    assert list(ResourceStore(conn, storage.T_JOBS).scan(pk_prefix=ws.child_pk + "|")) == []
    assert not share.exists()


def test_cluster_deletion_fails_its_queued_jobs(http: httpx.Client, ws: WorkspaceRef) -> None:
    queued = put_job(http, ws, "q")
    assert http.delete(f"{ws.arm_id}/clusters/c?{API}").status_code == 202
    job = wait_until(lambda: (p := http.get(f"{queued.arm_id}?{API}").json()["properties"])["executionState"]
                     == "failed" and p, what="the cluster's queued job to fail")
    error = job["executionInfo"]["errors"][0]
    assert error["code"] == "ClusterDeleted" and "cluster 'c' was deleted" in error["message"]
    wait_until(lambda: http.get(f"{ws.arm_id}/clusters/c?{API}").status_code == 404, what="the cluster to go")

    conn = Settings.from_env().storage_connection_string
    sched = storage.table(conn, storage.T_SCHED)
    key = ws.cluster("c").key
    sched.upsert_entity({"PartitionKey": key, "RowKey": "node|left-over", "state": "leaving"})
    again = http.put(f"{ws.arm_id}/clusters/c?{API}", json=CLUSTER)
    assert again.status_code == 409 and again.json()["error"]["code"] == "ClusterBeingDeleted"
    sched.delete_entity(key, "node|left-over")  # the reconciler removed the old nodes
    assert http.put(f"{ws.arm_id}/clusters/c?{API}", json=CLUSTER).status_code == 200
    for row in list(sched.query_entities("PartitionKey eq @pk", parameters={"pk": key})):
        sched.delete_entity(row["PartitionKey"], row["RowKey"])
    assert http.delete(f"{ws.arm_id}?{API}").status_code == 202
