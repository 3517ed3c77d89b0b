"""GPU slots at the API: a cluster's `properties.packing` and a job's `properties.gpusPerNode` are
validated (a 400 naming the field), stored where the scheduler reads them and echoed on GET; the
official SDK, which knows neither, is unaffected."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.adapters import sched_store, storage
from shared.adapters.resource_store import ResourceStore
from shared.domain import validation
from shared.domain.errors import ApiError
from tests.api.conftest import API, unique

CLUSTER = {"properties": {"vmSize": "STANDARD_NC12", "userAccountSettings": {"adminUserName": "me"},
                          "scaleSettings": {"manual": {"targetNodeCount": 0}}}}


def job_body(cluster_id: str, **extra: Any) -> dict[str, Any]:
    return {"properties": {"cluster": {"id": cluster_id}, "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out",
                           "customToolkitSettings": {"commandLine": "true"}, **extra}}


@pytest.mark.parametrize("packing", ["spread", "GPU-SLOTS", 1, ["gpu-slots"]])
def test_an_unknown_packing_is_refused(packing: Any) -> None:
    with pytest.raises(ApiError) as caught:
        validation.cluster_create({"properties": {**CLUSTER["properties"], "packing": packing}})
    assert caught.value.status == 400 and caught.value.target == "properties.packing"


@pytest.mark.parametrize("gpus", [0, -1, 65, 1.5, "1", True])
def test_gpus_per_node_must_be_a_count(gpus: Any) -> None:
    with pytest.raises(ApiError) as caught:
        validation.job_create(job_body("/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w"
                                       "/clusters/c", gpusPerNode=gpus))
    assert caught.value.status == 400 and caught.value.target == "properties.gpusPerNode"


def test_packing_and_gpus_per_node_are_kept_only_when_given() -> None:
    assert "packing" not in validation.cluster_create(copy.deepcopy(CLUSTER))
    assert validation.cluster_create({"properties": {**CLUSTER["properties"], "packing": "gpu-slots"}})[
        "packing"] == "gpu-slots"
    cluster_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w/clusters/c"
    assert "gpusPerNode" not in validation.job_create(job_body(cluster_id))
    assert validation.job_create(job_body(cluster_id, gpusPerNode=2))["gpusPerNode"] == 2


def error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return dict(response.json()["error"])


def test_packing_and_gpus_per_node_through_the_api(http: httpx.Client, ws_path: Callable[[str], str],
                                                   storage_conn: str) -> None:
    ws = unique("gpus")
    base = ws_path(ws)
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{base}/experiments/e?{API}", json={}).status_code == 200
    packed = {"properties": {**CLUSTER["properties"], "packing": "gpu-slots"}}
    created = http.put(f"{base}/clusters/packed?{API}", json=packed)
    assert created.status_code == 200, created.text
    assert created.json()["properties"]["packing"] == "gpu-slots"
    assert http.get(f"{base}/clusters/packed?{API}").json()["properties"]["packing"] == "gpu-slots"
    assert http.put(f"{base}/clusters/packed?{API}", json=packed).status_code == 200  # the same request again
    assert http.put(f"{base}/clusters/packed?{API}", json=CLUSTER).status_code == 409  # another packing
    sub, rg = base.split("/")[2], base.split("/")[4]
    doc = ResourceStore(storage_conn, storage.T_CLUSTERS).get(f"{sub}|{rg}|{ws}".lower(), "packed")
    assert doc is not None and doc.data["internal"]["packing"] == "gpu-slots"

    plain = http.put(f"{base}/clusters/plain?{API}", json=CLUSTER)
    assert plain.status_code == 200 and "packing" not in plain.json()["properties"]
    whole = {"properties": {**CLUSTER["properties"], "packing": "whole-node"}}
    assert http.put(f"{base}/clusters/plain?{API}", json=whole).status_code == 200  # the default, said
    assert error(http.put(f"{base}/clusters/bad?{API}", json={"properties": {**CLUSTER["properties"],
                                                                           "packing": "spread"}}))[
        "target"] == "properties.packing"

    cluster_id = f"{base}/clusters/packed"
    job = http.put(f"{base}/experiments/e/jobs/one?{API}", json=job_body(cluster_id, gpusPerNode=1))
    assert job.status_code == 200, job.text
    assert http.get(f"{base}/experiments/e/jobs/one?{API}").json()["properties"]["gpusPerNode"] == 1
    cluster_key = f"{sub}|{rg}|{ws}|packed".lower()
    [pending] = [r for r in sched_store.partition(storage_conn, cluster_key) if r["jobKey"].endswith("|one")]
    assert pending["slots"] == 1
    two = http.put(f"{base}/experiments/e/jobs/two?{API}", json=job_body(cluster_id, gpusPerNode=2))
    assert two.status_code == 200
    [pending] = [r for r in sched_store.partition(storage_conn, cluster_key) if r["jobKey"].endswith("|two")]
    assert pending["slots"] == 2
    too_many = error(http.put(f"{base}/experiments/e/jobs/three?{API}", json=job_body(cluster_id, gpusPerNode=3)))
    assert too_many["target"] == "properties.gpusPerNode" and "have 2" in too_many["message"]
    plain_job = http.put(f"{base}/experiments/e/jobs/plain?{API}", json=job_body(cluster_id))
    assert plain_job.status_code == 200 and "gpusPerNode" not in plain_job.json()["properties"]
