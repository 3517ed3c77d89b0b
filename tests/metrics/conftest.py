"""Fixtures of the metrics tests: a job made through the API (on a cluster of no nodes) whose stdout blobs
the tests write as a node agent streams them (append blobs under the job's output prefix)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from azure.storage.blob import BlobClient

from shared.adapters import storage

API = "api-version=2018-05-01"
CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 0}}}}


def client(endpoint: dict[str, str], token: str) -> httpx.Client:
    return httpx.Client(base_url=endpoint["url"], verify=ssl.create_default_context(cafile=endpoint["ca_file"]),
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


@dataclass
class Job:
    http: httpx.Client
    conn: str
    path: str  # the job's ARM id
    prefix: str  # its stdouterr directory in batchai-outputs

    def blob(self, name: str) -> BlobClient:
        return storage.container(self.conn, storage.C_OUTPUTS).get_blob_client(self.prefix + name)

    def start(self, name: str = "stdout.txt") -> BlobClient:
        """The file begun anew, as a task's (re)start begins it."""
        blob = self.blob(name)
        blob.create_append_blob()
        return blob

    def append(self, data: bytes, name: str = "stdout.txt") -> None:
        self.blob(name).append_block(data)

    def metrics(self, query: str = "") -> list[dict]:
        r = self.http.get(f"{self.path}/metrics?{API}{query}")
        assert r.status_code == 200, r.text
        return r.json()["value"]


@pytest.fixture()
def job(api_endpoint: dict[str, str], storage_conn: str) -> Iterator[Job]:
    run = uuid.uuid4().hex[:8]
    ws = (f"/subscriptions/{api_endpoint['subscription_id']}/resourceGroups/metrics-{run}"
          "/providers/Microsoft.BatchAI/workspaces/ws")
    with client(api_endpoint, api_endpoint["token"]) as http:
        assert http.put(f"{ws}?{API}", json={"location": "local"}).status_code == 200
        assert http.put(f"{ws}/clusters/c?{API}", json=CLUSTER).status_code == 200
        assert http.put(f"{ws}/experiments/e?{API}", json={}).status_code == 200
        body = {"properties": {"cluster": {"id": f"{ws}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
                               "customToolkitSettings": {"commandLine": "true"}}}
        r = http.put(f"{ws}/experiments/e/jobs/j?{API}", json=body)
        assert r.status_code == 200, r.text
        segment = r.json()["properties"]["jobOutputDirectoryPathSegment"]
        prefix = storage.output_prefix("ws", "e", "j", segment) + "/stdouterr/"
        yield Job(http, storage_conn, f"{ws}/experiments/e/jobs/j", prefix)
