"""Paging, output files with working SAS links, remote login and the read-only fields rendered from
what other services write (node rows, allocation state, execution info)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from azure.mgmt.batchai import BatchAI, models

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import ClusterRef, JobRef, WorkspaceRef
from tests.api.conftest import API, unique

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 3}}}}


@pytest.fixture()
def ws(http: httpx.Client, api_endpoint: dict[str, str]) -> Iterator[WorkspaceRef]:
    ref = WorkspaceRef(api_endpoint["subscription_id"], api_endpoint["resource_group"], unique("ws"))
    assert http.put(f"{ref.arm_id}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{ref.arm_id}/clusters/c?{API}", json=CLUSTER).status_code == 200
    assert http.put(f"{ref.arm_id}/experiments/e?{API}", json={}).status_code == 200
    yield ref
    storage_conn = Settings.from_env().storage_connection_string
    sched = storage.table(storage_conn, storage.T_SCHED)
    for row in list(sched.query_entities("PartitionKey eq @pk", parameters={"pk": ref.cluster("c").key})):
        sched.delete_entity(row["PartitionKey"], row["RowKey"])
    http.delete(f"{ref.arm_id}?{API}")


def put_job(http: httpx.Client, ws: WorkspaceRef, name: str, **props: object) -> dict:
    body = {"cluster": {"id": f"{ws.arm_id}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
            "customToolkitSettings": {"commandLine": "true"},
            "outputDirectories": [{"id": "MODEL", "pathPrefix": "/tmp/out"}]}
    body.update(props)
    r = http.put(f"{ws.arm_id}/experiments/e/jobs/{name}?{API}", json={"properties": body})
    assert r.status_code == 200, r.text
    return r.json()


def test_25_jobs_in_pages_of_10(http: httpx.Client, client: BatchAI, ws: WorkspaceRef) -> None:
    names = {f"job{i:02d}" for i in range(25)}
    for name in names:
        put_job(http, ws, name)
    url: str | None = f"{ws.arm_id}/experiments/e/jobs?{API}&maxresults=10"
    pages = []
    while url:
        r = http.get(url)
        assert r.status_code == 200
        pages.append([j["name"] for j in r.json()["value"]])
        url = r.json().get("nextLink")
    assert [len(p) for p in pages] == [10, 10, 5]
    assert {n for p in pages for n in p} == names
    listed = client.jobs.list_by_experiment(ws.resource_group, ws.workspace, "e",
                                            models.JobsListByExperimentOptions(max_results=10))
    assert sorted(j.name for j in listed) == sorted(names)


def test_output_files_with_download_links(http: httpx.Client, client: BatchAI, ws: WorkspaceRef) -> None:
    job = put_job(http, ws, "j")
    segment = job["properties"]["jobOutputDirectoryPathSegment"]
    prefix = storage.output_prefix(ws.workspace, "e", "j", segment)
    container = storage.container(Settings.from_env().storage_connection_string, storage.C_OUTPUTS)
    blobs = {f"{prefix}/stdouterr/stdout.txt": b"hello\n", f"{prefix}/stdouterr/stderr.txt": b"",
             f"{prefix}/outputs/MODEL/model.bin": b"\x00\x01weights", f"{prefix}/outputs/MODEL/ckpt/1.bin": b"one",
             f"{prefix}/outputs/MODEL/ckpt/2.bin": b"two"}
    for name, data in blobs.items():
        container.upload_blob(name, data, overwrite=True)
    base = f"{ws.arm_id}/experiments/e/jobs/j/listOutputFiles?{API}"

    r = http.post(f"{base}&outputdirectoryid=stdouterr&linkexpiryinminutes=5")
    files = {f["name"]: f for f in r.json()["value"]}
    assert set(files) == {"stdout.txt", "stderr.txt"}
    assert files["stdout.txt"]["properties"]["contentLength"] == 6 and files["stdout.txt"]["fileType"] == "file"
    download = httpx.get(files["stdout.txt"]["downloadUrl"])
    assert download.status_code == 200 and download.content == b"hello\n"
    expiry = datetime.fromisoformat(parse_qs(urlparse(files["stdout.txt"]["downloadUrl"]).query)["se"][0]
                                    .replace("Z", "+00:00"))
    assert timedelta(minutes=4) < expiry - datetime.now(UTC) <= timedelta(minutes=5, seconds=5)
    tampered = files["stdout.txt"]["downloadUrl"].replace("stdout.txt", "stderr.txt")
    assert httpx.get(tampered).status_code == 403  # the signature covers one blob

    top = {f["name"]: f["fileType"] for f in http.post(f"{base}&outputdirectoryid=model").json()["value"]}
    assert top == {"model.bin": "file", "ckpt": "directory"}
    sdk = client.jobs.list_output_files(ws.resource_group, ws.workspace, "e", "j", models.JobsListOutputFilesOptions(
        outputdirectoryid="MODEL", directory="ckpt", max_results=1))
    inner = {f.name: f for f in sdk}
    assert set(inner) == {"1.bin", "2.bin"}  # relative to the listed directory, as the real service answered
    assert httpx.get(inner["2.bin"].download_url).content == b"two"

    for query, target in [("outputdirectoryid=OTHER", "outputdirectoryid"), ("", "outputdirectoryid"),
                          ("outputdirectoryid=MODEL&directory=../x", "directory"),
                          ("outputdirectoryid=MODEL&linkexpiryinminutes=1", "linkexpiryinminutes")]:
        bad = http.post(f"{base}&{query}")
        assert bad.status_code == 400 and bad.json()["error"]["target"] == target


def test_rendering_from_node_rows_and_internal_fields(http: httpx.Client, client: BatchAI, ws: WorkspaceRef) -> None:
    settings = Settings.from_env()
    conn = settings.storage_connection_string
    job = put_job(http, ws, "runner")
    job_key = JobRef.from_key(f"{ws.child_pk}|e|runner").key
    cluster = ClusterRef(ws, "c")
    sched = storage.table(conn, storage.T_SCHED)
    rows = [("n1", "idle", {"address": "10.0.0.4", "sshPort": 22}),
            ("n2", "running", {"address": "10.0.0.5", "sshPort": 22, "loginAddress": "10.9.0.1", "loginPort": 50001,
                               "jobKey": job_key}),
            ("n3", "unusable", {"address": "10.0.0.6", "error": json.dumps({"code": "SetupTaskFailed",
                                                                             "message": "exit 3"})}),
            ("n4", "lost", {"address": "10.0.0.7"})]
    for node, state, extra in rows:
        sched.upsert_entity({"PartitionKey": cluster.key, "RowKey": f"node|{node}", "state": state, **extra})
    clusters = ResourceStore(conn, storage.T_CLUSTERS)
    clusters.update(ws.child_pk, "c", lambda d: d["internal"].update(
        allocationState="resizing", allocationStateTransitionTime="2030-01-02T03:04:05+00:00"))

    c = client.clusters.get(ws.resource_group, ws.workspace, "c")
    assert c.current_node_count == 3 and c.allocation_state == "resizing"
    assert c.allocation_state_transition_time.year == 2030
    counts = c.node_state_counts
    assert (counts.idle_node_count, counts.running_node_count, counts.unusable_node_count) == (1, 1, 2)
    assert [(e.code, e.message) for e in c.errors] == [("SetupTaskFailed", "exit 3")]
    logins = list(client.clusters.list_remote_login_information(ws.resource_group, ws.workspace, "c"))
    assert [(x.node_id, x.ip_address, x.port) for x in logins] == [  # n3 has no sshd: no address to log in to
        ("n1", "10.0.0.4", 22), ("n2", "10.9.0.1", 50001), ("n3", None, None)]  # n2: behind a load balancer's NAT
    mine = list(client.jobs.list_remote_login_information(ws.resource_group, ws.workspace, "e", "runner"))
    assert [(x.node_id, x.port) for x in mine] == [("n2", 50001)]

    jobs = ResourceStore(conn, storage.T_JOBS)
    jobs.update(f"{ws.child_pk}|e", "runner", lambda d: d["internal"].update(
        phase="running", executionStateTransitionTime="2030-01-02T03:04:06+00:00",
        executionInfo={"startTime": "2030-01-02T03:04:06+00:00", "errors": []}))
    j = client.jobs.get(ws.resource_group, ws.workspace, "e", "runner")
    assert j.execution_state == "running" and j.execution_info.start_time.year == 2030
    assert j.execution_state_transition_time.second == 6
    assert job["properties"]["executionState"] == "queued"

    usage = {u.name.value: u.current_value for u in client.usages.list("eastus")}
    assert usage["Total Cluster Dedicated Regional vCPUs"] >= 3  # n1..n3 count, the lost n4 does not
