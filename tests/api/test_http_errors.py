"""ARM conventions over raw HTTP: auth, api-version, bodies, names, paging parameters, create
semantics, If-Match, and validation errors that name their field. Never a 500 for bad input."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest

from shared.adapters import sched_store, storage
from shared.adapters.resource_store import ResourceStore, encode_token
from tests.api.conftest import API, unique

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 2}}}}


@pytest.fixture()
def ws(http: httpx.Client, ws_path: Callable[[str], str]) -> Iterator[str]:
    base = ws_path(unique("ws"))
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{base}/clusters/c?{API}", json=CLUSTER).status_code == 200
    assert http.put(f"{base}/experiments/e?{API}", json={}).status_code == 200
    yield base
    http.delete(f"{base}?{API}")


def job(ws: str, **props: object) -> dict:
    body = {"cluster": {"id": f"{ws}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
            "customToolkitSettings": {"commandLine": "true"}}
    body.update(props)
    return {"properties": body}


def error(r: httpx.Response, status: int, code: str | None = None, target: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"]
    if code:
        assert err["code"] == code
    if target:
        assert err["target"] == target and target in err["message"]
    return err


def test_authentication(http: httpx.Client, api_endpoint: dict[str, str], ws_path: Callable[[str], str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{ws_path('any')}?{API}"
    anonymous = httpx.Client(base_url=api_endpoint["url"], verify=ssl.create_default_context(
        cafile=api_endpoint["ca_file"]))
    error(anonymous.get(url), 401, "AuthenticationFailed")
    error(anonymous.get(url, headers={"Authorization": "Bearer wrong"}), 401, "InvalidAuthenticationToken")
    error(anonymous.get(url, headers={"Authorization": f"Basic {api_endpoint['token']}"}), 401)
    assert anonymous.get("/healthz").status_code == 200
    monkeypatch.delenv("BATCHAI_API_AUDIENCE")
    error(http.get(url), 401, "InvalidAuthenticationToken")  # no audience configured: closed to everyone


def test_api_version(http: httpx.Client, ws_path: Callable[[str], str]) -> None:
    error(http.get(ws_path("any")), 400, "InvalidApiVersionParameter", "api-version")
    error(http.get(f"{ws_path('any')}?api-version=2017-09-01-preview"), 400, "InvalidApiVersionParameter")
    error(http.get("/providers/Microsoft.BatchAI/operations"), 400, "InvalidApiVersionParameter")


def test_bodies(http: httpx.Client, ws: str) -> None:
    error(http.put(f"{ws}/clusters/x?{API}", content=b"{not json"), 400, "InvalidJson", "body")
    error(http.put(f"{ws}/clusters/x?{API}", json=[1, 2]), 400, target="body")
    big = {"properties": {**CLUSTER["properties"], "vmSize": "x" * 300_000}}
    err = error(http.put(f"{ws}/clusters/x?{API}", json=big), 413, "RequestEntityTooLarge")
    assert "262144 bytes" in err["message"]
    error(http.put(f"{ws}/clusters/x?{API}", json={"properties": {"vmSize": "a"}}), 400,
          "MissingRequiredProperty", "properties.userAccountSettings")
    error(http.put(f"{ws}/clusters/x?{API}", json={"properties": {**CLUSTER["properties"], "vmPriority": "spot"}}),
          400, target="properties.vmPriority")
    error(http.put(f"{ws}/clusters/x?{API}", json={"properties": {**CLUSTER["properties"], "scaleSettings": {
        "manual": {"targetNodeCount": 1}, "autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 1}}}}),
        400, target="properties.scaleSettings")
    error(http.put(f"{ws}/clusters/x?{API}", json={"properties": {**CLUSTER["properties"], "scaleSettings": {
        "autoScale": {"minimumNodeCount": 4, "maximumNodeCount": 1}}}}),
        400, target="properties.scaleSettings.autoScale.minimumNodeCount")
    error(http.patch(f"{ws}/clusters/c?{API}", json={"properties": {"scaleSettings": {"manual": {}}}}),
          400, target="properties.scaleSettings.manual.targetNodeCount")
    error(http.put(f"{ws.rsplit('/', 1)[0]}/w?{API}", json={"tags": {}}), 400, target="location")


def test_names(http: httpx.Client, ws: str, ws_path: Callable[[str], str]) -> None:
    error(http.put(f"{ws_path('bad.name')}?{API}", json={"location": "x"}), 400, "InvalidParameter", "workspaceName")
    error(http.get(f"{ws_path('x' * 65)}?{API}"), 400, target="workspaceName")
    error(http.put(f"{ws}/clusters/{'c' * 65}?{API}", json=CLUSTER), 400, target="clusterName")
    error(http.get(f"{ws}/experiments/e/jobs/j%20k?{API}"), 400, target="jobName")
    error(http.get(f"{ws}/fileServers/f!s?{API}"), 400, target="fileServerName")


def test_not_found_and_routes(http: httpx.Client, ws: str) -> None:
    error(http.get(f"{ws}/clusters/nope?{API}"), 404, "ClusterNotFound")
    error(http.get(f"{ws}/experiments/nope/jobs/j?{API}"), 404, "JobNotFound")
    error(http.put(f"{ws}/experiments/nope/jobs/j?{API}", json=job(ws)), 404, "ExperimentNotFound")
    error(http.get(f"{ws}/unknown?{API}"), 404, "NotFound")
    error(http.post(f"{ws}?{API}"), 405, "MethodNotAllowed")


def test_paging_parameters(http: httpx.Client, ws: str) -> None:
    error(http.get(f"{ws}/clusters?{API}&maxresults=0"), 400, target="maxresults")
    error(http.get(f"{ws}/clusters?{API}&maxresults=1001"), 400, target="maxresults")
    error(http.get(f"{ws}/clusters?{API}&$skiptoken=%%%garbage"), 400, target="$skiptoken")
    invented = encode_token(7)  # decodes, but is not a token this storage gives
    error(http.get(f"{ws}/clusters?{API}&$skiptoken={invented}"), 400, "InvalidParameter", target="$skiptoken")


def test_create_is_idempotent_and_create_only(http: httpx.Client, ws: str) -> None:
    first = http.put(f"{ws}/experiments/e/jobs/j?{API}", json=job(ws))
    again = http.put(f"{ws}/experiments/e/jobs/j?{API}", json=job(ws))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    parts = ws.split("/")
    cluster_key = "|".join([parts[2], parts[4], parts[8], "c"]).lower()
    pending = [r for r in sched_store.partition(os.environ["BATCHAI_STORAGE_CONNECTION_STRING"], cluster_key)
               if r["RowKey"].startswith(sched_store.PENDING)]
    assert [r["jobKey"] for r in pending] == ["|".join([parts[2], parts[4], parts[8], "e", "j"]).lower()]
    err = error(http.put(f"{ws}/experiments/e/jobs/j?{API}", json=job(ws, nodeCount=2)), 409, "Conflict")
    assert "already exists" in err["message"]
    assert http.put(f"{ws}/clusters/c?{API}", json=CLUSTER).status_code == 200
    other = {"properties": {**CLUSTER["properties"], "vmSize": "STANDARD_NC6"}}
    error(http.put(f"{ws}/clusters/c?{API}", json=other), 409, "Conflict")


def test_job_validation_against_the_workspace(http: httpx.Client, ws: str, ws_path: Callable[[str], str]) -> None:
    url = f"{ws}/experiments/e/jobs/j2?{API}"
    error(http.put(url, json=job(ws, nodeCount=3)), 400, target="properties.nodeCount")
    assert "maximumNodeCount is 2" in http.put(url, json=job(ws, nodeCount=3)).json()["error"]["message"]
    error(http.put(url, json=job(ws, cluster={"id": f"{ws}/clusters/missing"})), 400, target="properties.cluster.id")
    error(http.put(url, json=job(ws, cluster={"id": f"{ws_path('elsewhere')}/clusters/c"})), 400,
          target="properties.cluster.id")
    error(http.put(url, json=job(ws, cluster={"id": "not-an-id"})), 400, target="properties.cluster.id")
    error(http.put(url, json=job(ws, horovodSettings={"pythonScriptFilePath": "x.py"})), 400, target="properties")
    error(http.put(url, json=job(ws, outputDirectories=[{"id": "OUT"}])), 400,
          target="properties.outputDirectories[0].pathPrefix")


def test_if_match(http: httpx.Client, ws: str) -> None:
    got = http.get(f"{ws}/clusters/c?{API}")
    etag = got.headers["ETag"]
    scale = {"properties": {"scaleSettings": {"manual": {"targetNodeCount": 1}}}}
    first = http.patch(f"{ws}/clusters/c?{API}", json=scale, headers={"If-Match": etag})
    assert first.status_code == 200 and first.headers["ETag"] != etag
    error(http.patch(f"{ws}/clusters/c?{API}", json=scale, headers={"If-Match": etag}), 412, "PreconditionFailed")
    error(http.delete(f"{ws}/clusters/c?{API}", headers={"If-Match": etag}), 412, "PreconditionFailed")
    assert http.get(f"{ws}/clusters/c?{API}").status_code == 200
    ws_etag = http.get(f"{ws}?{API}").headers["ETag"]
    assert http.patch(f"{ws}?{API}", json={"tags": {"a": "1"}}, headers={"If-Match": ws_etag}).status_code == 200
    error(http.patch(f"{ws}?{API}", json={"tags": {"a": "2"}}, headers={"If-Match": ws_etag}), 412)


def test_unexpected_failure_is_an_arm_500(http: httpx.Client, ws: str, storage_conn: str) -> None:
    parts = ws.split("/")
    pk = "|".join([parts[2], parts[4], parts[8], "e"]).lower()
    store = ResourceStore(storage_conn, storage.T_JOBS)
    store.insert(pk, "broken", {"id": "x", "name": "broken", "properties": {}, "internal": {"phase": "bogus"}})
    error(http.get(f"{ws}/experiments/e/jobs/broken?{API}"), 500, "InternalServerError")
    store.delete(pk, "broken")
