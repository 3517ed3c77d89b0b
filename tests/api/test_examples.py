"""The contract's examples: each Put*/Patch* request body is sent as is (names made unique) and the
response has the example response's shape, with nothing outside the contract's definitions. Where the
hand-written examples differ from what the real service sent, the real service wins (REAL_SERVICE)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx

from shared.domain.contract import example, swagger
from tests.api.conftest import API, unique, wait_until

# Fields of an example response that depend on what the example's request did not send.
NOT_IN_REQUEST = {
    "PutCluster.json": {"properties.subnet"},
    "PutFileServer.json": {"properties.subnet"},
    "PutJob.json": {"properties.priority", "properties.executionInfo"},
    "PatchCluster.json": set(),
}


# The examples' `type` strings were written by hand; the live 2018-05-01 service sent ARM's registered type
# paths (its recorded responses: notes/real-service.md, "Resource `type`").
REAL_SERVICE_TYPE = {
    "Microsoft.BatchAI/Workspaces": "Microsoft.BatchAI/workspaces",
    "Microsoft.BatchAI/Clusters": "Microsoft.BatchAI/workspaces/clusters",
    "Microsoft.BatchAI/Experiments": "Microsoft.BatchAI/workspaces/experiments",
    "Microsoft.BatchAI/Job": "Microsoft.BatchAI/workspaces/experiments/jobs",
    "Microsoft.BatchAI/FileServers": "Microsoft.BatchAI/workspaces/fileServers",
}


def missing(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Paths of the example that our response lacks or gives another JSON type."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path]
        out: list[str] = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else key
            out += [sub] if key not in actual else missing(value, actual[key], sub)
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or (expected and not actual):
            return [path]
        return missing(expected[0], actual[0], f"{path}[0]") if expected else []
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers):
        return []
    return [] if type(expected) is type(actual) else [f"{path} (type)"]


def outside_contract(body: dict[str, Any], definition: str) -> set[str]:
    known = set(swagger()["definitions"][definition]["properties"])
    return set(body["properties"]) - known


def response_example(name: str) -> dict[str, Any]:
    responses = example(name)["responses"]["200"]
    return responses.get("body") or responses["parameters"]  # PutFileServer.json names it "parameters"


def request_example(name: str) -> dict[str, Any]:
    return copy.deepcopy(example(name)["parameters"]["parameters"])


def check(name: str, response: httpx.Response, definition: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    expected = response_example(name)
    assert set(missing(expected, body)) <= NOT_IN_REQUEST.get(name, set())
    assert expected["type"] != body["type"] == REAL_SERVICE_TYPE[expected["type"]]
    assert outside_contract(body, definition) == set()
    assert response.headers["ETag"]
    return body


def test_every_put_and_patch_example(http: httpx.Client, api_endpoint: dict[str, str],
                                     ws_path: Callable[[str], str]) -> None:
    ws = unique("demo_workspace")
    base = ws_path(ws)
    body = check("PutWorkspace.json", http.put(f"{base}?{API}", json=request_example("PutWorkspace.json")),
                 "WorkspaceProperties")
    assert body["location"] == "eastus" and body["type"] == "Microsoft.BatchAI/workspaces"
    check("PatchWorkspace.json", http.patch(f"{base}?{API}", json=request_example("PatchWorkspace.json")),
          "WorkspaceProperties")

    fs = check("PutFileServer.json", http.put(f"{base}/fileServers/demo_nfs?{API}",
                                              json=request_example("PutFileServer.json")), "FileServerProperties")
    assert "adminUserPassword" not in fs["properties"]["sshConfiguration"]["userAccountSettings"]

    cluster = check("PutCluster.json", http.put(f"{base}/clusters/demo_cluster?{API}",
                                                json=request_example("PutCluster.json")), "ClusterProperties")
    assert cluster["properties"]["nodeSetup"]["mountVolumes"]["azureFileShares"][0]["credentials"] == {}
    check("PatchCluster.json", http.patch(f"{base}/clusters/demo_cluster?{API}",
                                          json=request_example("PatchCluster.json")), "ClusterProperties")

    check("PutExperiment.json", http.put(f"{base}/experiments/demo_experiment?{API}",
                                         json=request_example("PutExperiment.json")), "ExperimentProperties")

    job = request_example("PutJob.json")
    sub, rg = api_endpoint["subscription_id"], api_endpoint["resource_group"]
    # The example names the cluster with a singular "workspace" segment; it is accepted as Batch AI did.
    job["properties"]["cluster"]["id"] = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI"
                                          f"/workspace/{ws}/clusters/demo_cluster")
    body = check("PutJob.json", http.put(f"{base}/experiments/demo_experiment/jobs/demo_job?{API}", json=job),
                 "JobProperties")
    assert body["properties"]["cluster"]["id"] == f"{base}/clusters/demo_cluster"
    assert body["properties"]["toolType"] == "custom" and body["properties"]["executionState"] == "queued"

    assert http.delete(f"{base}?{API}").status_code == 202
    wait_until(lambda: http.get(f"{base}?{API}").status_code == 404, what="the workspace's deletion")


def test_list_operations_matches_the_example(http: httpx.Client) -> None:
    r = http.get(f"/providers/Microsoft.BatchAI/operations?{API}")
    assert r.status_code == 200
    expected = example("ListOperation.json")["responses"]["200"]["body"]["value"]
    assert r.json()["value"][:len(expected)] == expected
