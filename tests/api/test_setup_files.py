"""listNodeSetupFiles: a cluster's node setup task output, a directory per node, with download links."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.adapters import storage
from shared.config import Settings
from tests.api.conftest import API, unique

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 0}},
                          "nodeSetup": {"setupTask": {"commandLine": "echo set up",
                                                      "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}}}}


def test_setup_output_of_each_node(http: httpx.Client, ws_path: Callable[[str], str]) -> None:
    ws = unique("ws")
    base = ws_path(ws)
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{base}/clusters/c?{API}", json=CLUSTER).status_code == 200
    container = storage.container(Settings.from_env().storage_connection_string, storage.C_OUTPUTS)
    for node, text in [("node-a", b"set up a\n"), ("node-b", b"set up b\n")]:
        prefix = storage.setup_output_prefix(ws, "c", node)
        container.upload_blob(f"{prefix}/stdout.txt", text, overwrite=True)
        container.upload_blob(f"{prefix}/stderr.txt", b"", overwrite=True)
    url = f"{base}/clusters/c/listNodeSetupFiles?{API}"

    nodes = http.post(url).json()["value"]
    assert {(f["name"], f["fileType"]) for f in nodes} == {("node-a", "directory"), ("node-b", "directory")}
    files = {f["name"]: f for f in http.post(f"{url}&directory=node-a&linkexpiryinminutes=5").json()["value"]}
    assert set(files) == {"stdout.txt", "stderr.txt"}
    assert files["stdout.txt"]["properties"]["contentLength"] == len(b"set up a\n")
    assert httpx.get(files["stdout.txt"]["downloadUrl"]).content == b"set up a\n"

    first = http.post(f"{url}&maxresults=1").json()
    assert len(first["value"]) == 1 and first["nextLink"]
    rest = http.get(first["nextLink"]).json()
    assert {f["name"] for f in first["value"] + rest["value"]} == {"node-a", "node-b"}

    missing = http.post(f"{base}/clusters/nope/listNodeSetupFiles?{API}")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "ClusterNotFound")
    for query, target in [("directory=../x", "directory"), ("linkexpiryinminutes=1", "linkexpiryinminutes")]:
        bad = http.post(f"{url}&{query}")
        assert bad.status_code == 400 and bad.json()["error"]["target"] == target


def test_the_route_is_documented() -> None:
    from functions.http_api import api

    paths = api.openapi()["paths"]
    route = [p for p in paths if p.endswith("/clusters/{clusterName}/listNodeSetupFiles")]
    assert route and "post" in paths[route[0]] and "node setup task" in paths[route[0]]["post"]["description"]
