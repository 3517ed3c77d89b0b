"""Bounds on what one request may ask for: node and process counts, disks, bodies of the wrong type
(the swagger leaves `type: object` out of its definitions) and request bodies larger than the cap,
read no further than the cap."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shared.localhost import http as front
from tests.ingress.conftest import API, cluster_body, error_of, job_body, put, workspace


def _cluster(http: httpx.Client, ws: str, name: str, body: dict[str, Any]) -> httpx.Response:
    return put(http, f"{ws}/clusters/{name}", body)


def test_a_job_no_cluster_of_its_could_ever_fit_is_refused_with_the_reason(http: httpx.Client, sub: str) -> None:
    ws = workspace(http, sub)
    assert put(http, f"{ws}/experiments/e", {}).status_code in (200, 201)
    assert _cluster(http, ws, "two", cluster_body(2)).status_code in (200, 201)
    r = put(http, f"{ws}/experiments/e/jobs/huge", job_body(f"{ws}/clusters/two", nodeCount=1_000_000))
    assert r.status_code == 400, r.text
    assert error_of(r)["target"] == "properties.nodeCount" and "1000000" in error_of(r)["message"]
    beyond_quota = put(http, f"{ws}/experiments/e/jobs/wide", job_body(f"{ws}/clusters/two", nodeCount=601))
    assert beyond_quota.status_code == 400, beyond_quota.text
    assert "can never have more than 600" in error_of(beyond_quota)["message"]
    assert "quota" in error_of(beyond_quota)["message"]
    fits_later = put(http, f"{ws}/experiments/e/jobs/later", job_body(f"{ws}/clusters/two", nodeCount=3))
    assert fits_later.status_code == 200, fits_later.text  # a resize of the cluster can run it


@pytest.mark.parametrize("scale", [
    {"manual": {"targetNodeCount": 100_000}},
    {"manual": {"targetNodeCount": -1}},
    {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 5000}},
    {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 10, "initialNodeCount": 2000}},
])
def test_node_counts_are_bounded(http: httpx.Client, sub: str, scale: dict[str, Any]) -> None:
    ws = workspace(http, sub)
    body = cluster_body()
    body["properties"]["scaleSettings"] = scale
    r = _cluster(http, ws, "big", body)
    assert r.status_code == 400, r.text
    assert error_of(r)["target"].startswith("properties.scaleSettings")
    assert http.get(f"{ws}/clusters/big", params=API).status_code == 404
    assert _cluster(http, ws, "ok", cluster_body(1)).status_code in (200, 201)
    patch = http.patch(f"{ws}/clusters/ok", params=API, json={"properties": {"scaleSettings": scale}})
    assert patch.status_code == 400, patch.text


@pytest.mark.parametrize("toolkit", [
    {"customMpiSettings": {"commandLine": "true", "processCount": 10**9}},
    {"pyTorchSettings": {"pythonScriptFilePath": "x.py", "processCount": 0}},
    {"horovodSettings": {"pythonScriptFilePath": "x.py", "processCount": 257}},
    {"tensorFlowSettings": {"pythonScriptFilePath": "x.py", "workerCount": 10**6}},
])
def test_process_counts_are_bounded_by_the_job_s_nodes(http: httpx.Client, sub: str, toolkit: dict[str, Any]) -> None:
    ws = workspace(http, sub)
    put(http, f"{ws}/experiments/e", {})
    _cluster(http, ws, "c", cluster_body(1))
    body = job_body(f"{ws}/clusters/c")
    del body["properties"]["customToolkitSettings"]
    body["properties"].update(toolkit)
    r = put(http, f"{ws}/experiments/e/jobs/j", body)
    assert r.status_code == 400, r.text
    assert error_of(r)["target"].startswith(f"properties.{next(iter(toolkit))}.")


@pytest.mark.parametrize("field, value", [
    ("scaleSettings", "manual"), ("scaleSettings", 3), ("scaleSettings", [{"manual": {}}]),
    ("nodeSetup", "setup"), ("virtualMachineConfiguration", 7), ("userAccountSettings", ["u"]),
])
def test_a_scalar_where_an_object_belongs_is_a_400_not_a_500(http: httpx.Client, sub: str, field: str,
                                                             value: Any) -> None:
    ws = workspace(http, sub)
    body = cluster_body()
    body["properties"][field] = value
    r = _cluster(http, ws, "c", body)
    assert r.status_code == 400, r.text
    assert field in error_of(r)["target"]


def test_file_server_disks_are_bounded(http: httpx.Client, sub: str) -> None:
    ws = workspace(http, sub)
    body = {"properties": {"vmSize": "STANDARD_D1_V2", "sshConfiguration": {"userAccountSettings": {
        "adminUserName": "u"}}, "dataDisks": {"diskSizeInGB": 10, "diskCount": 1000, "storageAccountType":
                                               "Standard_LRS"}}}
    r = put(http, f"{ws}/fileServers/fs", body)
    assert r.status_code == 400 and error_of(r)["target"] == "properties.dataDisks.diskCount", r.text


def test_query_integers_are_ascii_digits(http: httpx.Client, sub: str) -> None:
    r = http.get(f"/subscriptions/{sub}/providers/Microsoft.BatchAI/workspaces",
                 params={**API, "maxresults": "\u0665"})  # ARABIC-INDIC DIGIT FIVE: int() reads it as 5
    assert r.status_code == 400 and error_of(r)["target"] == "maxresults", r.text


def test_a_request_body_is_read_no_further_than_the_cap() -> None:
    """The host reads the body as it streams in and answers 413 once it passes the cap, without
    taking in the rest (here 4 MiB offered in 64 KiB chunks)."""
    chunk, offered = 64 * 1024, 64
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": pulled < offered}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "PUT", "path": "/anything", "headers": [], "query_string": b""}
    cap = 1024 * 1024
    asyncio.run(front.HttpFront([], route_prefix="")(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled <= cap // chunk + 1 < offered
    declared = {**scope, "headers": [(b"content-length", str(cap + 1).encode())]}
    pulled, sent = 0, []
    asyncio.run(front.HttpFront([], route_prefix="")(declared, receive, send))
    assert sent[0]["status"] == 413 and pulled == 0


def test_the_api_refuses_a_body_over_256_kib_sent_without_a_length(http: httpx.Client, sub: str) -> None:
    ws = workspace(http, sub)

    def chunks() -> Any:
        for _ in range(5):
            yield b" " * (64 * 1024)
        yield b'{"location": "local"}'

    r = http.put(f"{ws}", params=API, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "RequestEntityTooLarge", r.text
