"""Where the live 2018-05-01 service answered differently from the swagger examples, the API answers as the
service did: resource types, per-resource not-found codes, and deletes as long-running operations."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.batchai import BatchAI, models
from azure.mgmt.core.polling.arm_polling import ARMPolling

from shared.adapters import storage
from shared.config import Settings
from tests.api.conftest import API, unique, wait_until

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


def test_each_resource_has_its_own_not_found_code(http: httpx.Client, client: BatchAI, rg: str,
                                                  ws_path: Callable[[str], str]) -> None:
    base = make_workspace(http, ws_path)
    ws = base.rsplit("/", 1)[-1]
    missing = {
        ws_path("nows"): ("WorkspaceNotFound", "The specified workspace nows is not found"),
        f"{base}/clusters/noc": ("ClusterNotFound", "The specified cluster noc is not found"),
        f"{base}/fileServers/nofs": ("FileServerNotFound", "The specified file server nofs is not found"),
        f"{base}/experiments/noe": ("ExperimentNotFound", "The specified experiment noe is not found"),
        f"{base}/experiments/e/jobs/noj": ("JobNotFound", "The specified job noj is not found"),
    }
    for url, (code, message) in missing.items():
        r = http.get(f"{url}?{API}")
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]) == (404, code, message)
    sub = base.split("/")[2]
    op = http.get(f"/subscriptions/{sub}/providers/Microsoft.BatchAI/locations/eastus/operationresults/nope?{API}")
    assert (op.status_code, op.json()["error"]["code"]) == (404, "OperationNotFound")
    submit = http.put(f"{base}/experiments/noe/jobs/j?{API}", json=job_body(base))
    assert (submit.status_code, submit.json()["error"]["code"]) == (404, "ExperimentNotFound")

    for call, code in [(lambda: client.workspaces.get(rg, "nows"), "WorkspaceNotFound"),
                       (lambda: client.clusters.get(rg, ws, "noc"), "ClusterNotFound"),
                       (lambda: client.experiments.get(rg, ws, "noe"), "ExperimentNotFound"),
                       (lambda: client.jobs.get(rg, ws, "e", "noj"), "JobNotFound")]:
        with pytest.raises(ResourceNotFoundError) as e:
            call()
        assert e.value.error.code == code


def test_output_file_names_are_relative_to_the_listed_directory(http: httpx.Client, client: BatchAI, rg: str,
                                                                ws_path: Callable[[str], str]) -> None:
    base = make_workspace(http, ws_path)
    ws = base.rsplit("/", 1)[-1]
    body = job_body(base)
    body["properties"]["outputDirectories"] = [{"id": "OUT", "pathPrefix": "/tmp/out"}]
    job = http.put(f"{base}/experiments/e/jobs/without?{API}", json=body).json()
    prefix = storage.output_prefix(ws, "e", "without", job["properties"]["jobOutputDirectoryPathSegment"])
    container = storage.container(Settings.from_env().storage_connection_string, storage.C_OUTPUTS)
    for name, data in {"top.txt": b"t", "sub/nested.txt": b"n", "sub/deeper/x.txt": b"x"}.items():
        container.upload_blob(f"{prefix}/outputs/OUT/{name}", data, overwrite=True)

    def listing(directory: str) -> dict[str, models.File]:
        options = models.JobsListOutputFilesOptions(outputdirectoryid="OUT", directory=directory)
        return {f.name: f for f in client.jobs.list_output_files(rg, ws, "e", "without", options)}

    assert {n: f.file_type for n, f in listing(".").items()} == {"top.txt": "file", "sub": "directory"}
    sub = listing("sub")
    assert {n: f.file_type for n, f in sub.items()} == {"nested.txt": "file", "deeper": "directory"}
    assert httpx.get(sub["nested.txt"].download_url).content == b"n"
    assert list(listing("sub/deeper")) == ["x.txt"]


def finished_operation(http: httpx.Client, deleted: httpx.Response) -> dict:
    """The operation a DELETE answered with, once it ended (its Azure-AsyncOperation status document)."""
    assert deleted.status_code == 202, deleted.text
    status_url, location = deleted.headers["Azure-AsyncOperation"], deleted.headers["Location"]
    assert "/operationresults/" in status_url and "/operationstatuses/" in location and deleted.headers["Retry-After"]

    def ended() -> dict | None:
        r = http.get(status_url)
        assert r.status_code == 200  # the status document answers 200 while it runs too
        return r.json() if r.json()["status"] != "InProgress" else None

    body = wait_until(ended, 30, "the delete operation to end")
    assert http.get(location).status_code == 200
    assert body["name"] == status_url.split("?")[0].rsplit("/", 1)[-1] and body["id"] == status_url.split("?")[0]
    assert body["startTime"] and body["endTime"]
    return body


def test_deletes_answer_202_with_an_operation(http: httpx.Client, ws_path: Callable[[str], str]) -> None:
    base = make_workspace(http, ws_path)
    sub, rg, ws = base.split("/")[2], base.split("/")[4], base.rsplit("/", 1)[-1]
    cases = [
        ("/experiments/e/jobs/j", "JobNotFound", f"{sub}${rg}${ws}$e$j"),
        ("/experiments/e", "ExperimentNotFound", f"{sub}${rg}${ws}$e"),
        ("/clusters/c", "ClusterNotFound", f"{sub}${rg}${ws}$c"),
        ("/fileServers/fs", "FileServerNotFound", f"{sub}${rg}${ws}$fs"),
        ("", "WorkspaceNotFound", f"{sub}${rg}${ws}"),
    ]
    for path, code, resource_id in cases:
        url = f"{base}{path}?{API}"
        op = finished_operation(http, http.delete(url))
        assert op["status"] == "Succeeded" and op["properties"] == {"resourceId": resource_id}, path
        gone = http.get(url)
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, code)
        assert http.delete(url).status_code == 204  # nothing left to delete


def test_sdk_deletes_wait_for_their_operations(http: httpx.Client, client: BatchAI, rg: str,
                                               ws_path: Callable[[str], str]) -> None:
    base = make_workspace(http, ws_path)
    ws = base.rsplit("/", 1)[-1]
    client.jobs.begin_delete(rg, ws, "e", "j").result(timeout=30)
    client.experiments.begin_delete(rg, ws, "e").result(timeout=30)
    client.clusters.begin_delete(rg, ws, "c").result(timeout=30)
    # azure-mgmt-batchai 7.0.0 lacks file server delete: the same ARM long-running protocol, driven by azure-core.
    url = client._client.format_url(f"{base}/fileServers/fs?{API}")
    response = client._client.send_request(HttpRequest("DELETE", url), _return_pipeline_response=True)
    LROPoller(client._client, response, lambda _: None, ARMPolling(0.2)).result(timeout=30)
    client.workspaces.begin_delete(rg, ws).result(timeout=30)
    for path, code in [("/experiments/e/jobs/j", "JobNotFound"), ("/experiments/e", "ExperimentNotFound"),
                       ("/clusters/c", "ClusterNotFound"), ("/fileServers/fs", "FileServerNotFound"),
                       ("", "WorkspaceNotFound")]:
        assert http.get(f"{base}{path}?{API}").json()["error"]["code"] == code
