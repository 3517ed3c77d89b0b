"""Where the live 2018-05-01 service answered differently from the swagger examples, the API answers as the
service did: resource types, per-resource not-found codes, and deletes as long-running operations."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from azure.mgmt.batchai import BatchAI, models

from tests.api.conftest import API, unique

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 0}}}}
FILESERVER = {"properties": {"vmSize": "STANDARD_D2", "sshConfiguration": {"userAccountSettings": {
    "adminUserName": "u"}}, "dataDisks": {"diskSizeInGB": 1, "diskCount": 1, "storageAccountType": "Standard_LRS"}}}


def job_body(ws_url: str) -> dict:
    return {"properties": {"cluster": {"id": f"{ws_url}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
                           "customToolkitSettings": {"commandLine": "true"}}}


def make_workspace(http: httpx.Client, ws_path: Callable[[str], str]) -> str:
    base = ws_path(unique("ws"))
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{base}/clusters/c?{API}", json=CLUSTER).status_code == 200
    assert http.put(f"{base}/fileServers/fs?{API}", json=FILESERVER).status_code == 200
    assert http.put(f"{base}/experiments/e?{API}", json={}).status_code == 200
    assert http.put(f"{base}/experiments/e/jobs/j?{API}", json=job_body(base)).status_code == 200
    return base


def test_resource_types_are_the_arm_type_paths(http: httpx.Client, client: BatchAI, rg: str,
                                               ws_path: Callable[[str], str]) -> None:
    base = make_workspace(http, ws_path)
    expected = {
        "": "Microsoft.BatchAI/workspaces",
        "/clusters/c": "Microsoft.BatchAI/workspaces/clusters",
        "/fileServers/fs": "Microsoft.BatchAI/workspaces/fileServers",
        "/experiments/e": "Microsoft.BatchAI/workspaces/experiments",
        "/experiments/e/jobs/j": "Microsoft.BatchAI/workspaces/experiments/jobs",
    }
    for path, resource_type in expected.items():
        assert http.get(f"{base}{path}?{API}").json()["type"] == resource_type, path
        if path:
            listed = http.get(f"{base}{path.rsplit('/', 1)[0]}?{API}").json()["value"]
            assert [r["type"] for r in listed] == [resource_type], path
    ws = base.rsplit("/", 1)[-1]
    assert client.workspaces.get(rg, ws).type == "Microsoft.BatchAI/workspaces"
    assert {w.type for w in client.workspaces.list_by_resource_group(rg)} == {"Microsoft.BatchAI/workspaces"}
    job = client.jobs.get(rg, ws, "e", "j")
    assert isinstance(job, models.Job) and job.type == "Microsoft.BatchAI/workspaces/experiments/jobs"
