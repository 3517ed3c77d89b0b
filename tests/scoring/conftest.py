"""Scoring fixtures: the local stack with a 2-node cluster, and helpers to upload inputs and
manifests and to read runs through the API."""

from __future__ import annotations

import contextlib
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from shared.adapters import storage
from shared.domain import scoring as sc
from tests.e2e.conftest import Stack, wait_until

HERE = Path(__file__).resolve().parent
WS, EXP, CLUSTER = "scoring", "runs", "two"


class ScoringStack(Stack):
    def __init__(self, endpoint: dict[str, Any]) -> None:
        super().__init__(endpoint)
        self.blobs = BlobServiceClient.from_connection_string(endpoint["storage_connection_string"])
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=endpoint["ca_file"]), timeout=30,
                                 headers={"Authorization": f"Bearer {endpoint['token']}"})

    def upload_inputs(self, container: str, items: dict[str, str]) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.blobs.create_container(container)
        client = self.blobs.get_container_client(container)
        for name, text in items.items():
            client.upload_blob(name, text.encode(), overwrite=True)

    def manifest_blob(self, ws: str, name: str) -> str:
        return f"{self.sub}/{self.rg}/{ws}/{name}.json"

    def upload_manifest(self, ws: str, name: str, manifest: dict[str, Any] | str, token: str | None = None) -> str:
        """Upload a manifest for the submitter of `token` (the stack's owner by default); the run id it starts."""
        blob = self.manifest_blob(ws, name)
        data = manifest if isinstance(manifest, str) else json.dumps(manifest)
        client = self.blobs.get_blob_client(storage.C_TRIGGERS, blob)
        result = client.upload_blob(data.encode(), overwrite=True,
                                    metadata={"authorization": f"Bearer {token or self.endpoint['token']}"})
        return sc.run_id(blob, result["etag"])

    def register(self, ws: str, containers: list[str]) -> None:
        """Make these containers of the data account the workspace's data containers (and only these)."""
        r = self.http.patch(f"{self.endpoint['url']}{self.ws_path(ws)}", params={"api-version": "2018-05-01"},
                            json={"properties": {"dataContainers": containers}})
        assert r.status_code == 200, r.text

    def api(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"{self.endpoint['url']}{path}", params={"api-version": "2018-05-01", **params})

    def ws_path(self, ws: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.BatchAI/workspaces/{ws}"

    def run(self, ws: str, run: str) -> dict[str, Any] | None:
        r = self.api(f"{self.ws_path(ws)}/batchScoringRuns/{run}")
        return r.json() if r.status_code == 200 else None

    def wait_run(self, ws: str, run: str, timeout: float = 600) -> dict[str, Any]:
        """The run once it has ended (`timeout` is only how soon a failure shows: on a loaded host a
        run of 120 items has taken 6 minutes)."""
        def ended() -> dict[str, Any] | None:
            body = self.run(ws, run)
            return body if body and body["properties"]["state"] in ("succeeded", "failed") else None
        return wait_until(ended, timeout, interval=0.5, what=f"scoring run {run} to end")

    def read_blob(self, container: str, name: str) -> bytes:
        return self.blobs.get_container_client(container).download_blob(name).readall()

    def names(self, container: str, prefix: str = "") -> list[str]:
        return [b.name for b in self.blobs.get_container_client(container).list_blobs(name_starts_with=prefix)]


def command(script: str) -> str:
    return f"{sys.executable} {HERE / script}"


def template(script: str = "score_items.py") -> dict[str, Any]:
    return {"properties": {"stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                           "customToolkitSettings": {"commandLine": command(script)}}}


def manifest(input_container: str, output_container: str, **extra: Any) -> dict[str, Any]:
    return {"cluster": CLUSTER, "experiment": EXP, "input": {"container": input_container, "prefix": "in/"},
            "output": {"container": output_container, "prefix": "out/"}, "jobTemplate": template(), **extra}


# The data containers the scoring tests' workspace registers (inputs and outputs of every run).
CONTAINERS = ["inputs-a", "outputs-a", "inputs-r", "outputs-r", "inputs-t10", "outputs-t10", "inputs-t2",
              "outputs-t2", "inputs-empty", "out-x", "inputs-cli", "outputs-cli", "inputs-d", "outputs-d"]


@pytest.fixture(scope="session")
def scoring_stack(local_stack: dict[str, Any]) -> ScoringStack:
    s = ScoringStack(local_stack)
    s.workspace(WS)
    s.register(WS, CONTAINERS)
    s.client.experiments.begin_create(s.rg, WS, EXP).result()
    s.manual_cluster(WS, CLUSTER, 2)
    s.idle_nodes(WS, CLUSTER, 2)
    return s
