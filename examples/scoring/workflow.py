"""The batch-scoring workflow on a running stack, shared by the example and the benchmark: a
workspace with a 2-node cluster, a trained model in a blob container, digit images as input blobs,
a manifest upload, and the run followed through the API until it ends."""

from __future__ import annotations

import io
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from azure.core.exceptions import ResourceExistsError
from azure.mgmt.batchai import models
from azure.storage.blob import BlobServiceClient
from sklearn.datasets import load_digits

from examples.digits import train
from examples.scoring.digits_images import image_name, to_pgm
from shared.cli.context import make_client
from shared.domain import scoring as sc

HERE = Path(__file__).resolve().parent
MODEL_CONTAINER = "scoring-model"
TRIGGERS = "batchai-triggers"


class Workflow:
    def __init__(self, endpoint: dict[str, Any], workspace: str, cluster: str = "cpu2",
                 experiment: str = "scoring") -> None:
        self.endpoint = endpoint
        self.rg, self.sub = endpoint["resource_group"], endpoint["subscription_id"]
        self.ws, self.cluster, self.experiment = workspace, cluster, experiment
        self.client = make_client(endpoint, self.sub)
        self.blobs = BlobServiceClient.from_connection_string(endpoint["storage_connection_string"])
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=endpoint["ca_file"]), timeout=30,
                                 headers={"Authorization": f"Bearer {endpoint['token']}"})

    def resources(self, nodes: int = 2, timeout_s: float = 120) -> None:
        c = self.client
        c.workspaces.begin_create(self.rg, self.ws, models.WorkspaceCreateParameters(location="local")).result()
        c.clusters.begin_create(self.rg, self.ws, self.cluster, models.ClusterCreateParameters(
            vm_size="STANDARD_D1_V2",
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=nodes)),
            user_account_settings=models.UserAccountSettings(admin_user_name="scoring", admin_user_password="x"),
        )).result()
        c.experiments.begin_create(self.rg, self.ws, self.experiment).result()
        deadline = time.monotonic() + timeout_s
        while (c.clusters.get(self.rg, self.ws, self.cluster).node_state_counts.idle_node_count or 0) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{nodes} nodes did not become idle in {timeout_s:.0f} s")
            time.sleep(0.3)

    def _container(self, name: str) -> Any:
        try:
            return self.blobs.create_container(name)
        except ResourceExistsError:
            return self.blobs.get_container_client(name)

    def upload_model(self, epochs: int = 10) -> float:
        """Train the digits model here (a few seconds) and upload model.npz; its test accuracy."""
        x_train, y_train, x_test, y_test = train.load_split(0)
        rng = np.random.default_rng(0)
        params = train.init_params(rng)
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
        for _ in range(epochs):
            train.train_epoch(params, velocity, x_train, y_train, rng, 0.05, 32)
        buffer = io.BytesIO()
        np.savez(buffer, **params)
        self._container(MODEL_CONTAINER).upload_blob("model.npz", buffer.getvalue(), overwrite=True)
        return train.accuracy(params, x_test, y_test)

    def upload_images(self, container: str, prefix: str, count: int) -> list[str]:
        """The first `count` digits (repeating the data set if needed) as PGM blobs; their names."""
        digits = load_digits()
        client = self._container(container)
        names = []
        for i in range(count):
            j = i % len(digits.target)
            name = f"{prefix}{image_name(i, int(digits.target[j]))}"
            client.upload_blob(name, to_pgm(digits.data[j] / 16.0), overwrite=True)
            names.append(name)
        return names

    def job(self, script: str, args: str = "") -> dict[str, Any]:
        """A job template running one of this directory's scripts with the model container mounted."""
        return {"properties": {
            "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
            "mountVolumes": {"azureBlobFileSystems": [{
                "accountName": "devstoreaccount1", "containerName": MODEL_CONTAINER, "relativeMountPath": "model",
                "credentials": {}}]},
            "inputDirectories": [{"id": "MODEL", "path": "$AZ_BATCHAI_JOB_MOUNT_ROOT/model"}],
            "customToolkitSettings": {"commandLine": f"{sys.executable} {HERE / script} {args}".strip()}}}

    def manifest(self, input_container: str, input_prefix: str, output_container: str, output_prefix: str,
                 items_per_job: int, work_ms: float = 0.0, final: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "cluster": self.cluster, "experiment": self.experiment,
            "input": {"container": input_container, "prefix": input_prefix},
            "output": {"container": output_container, "prefix": output_prefix},
            "itemsPerJob": items_per_job, "errorThreshold": {"failedItemsPercent": 1}, "maxRetries": 1,
            "jobTemplate": self.job("score.py", f"--work-ms {work_ms:g}" if work_ms else "")}
        if final:
            body["finalJob"] = self.job("stitch.py")
        return body

    def register(self, *containers: str) -> None:
        """Register data containers of the workspace: the only containers its scoring runs read and write."""
        path = (f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.BatchAI/workspaces/"
                f"{self.ws}")
        current = self.http.get(self.endpoint["url"] + path, params={"api-version": "2018-05-01"})
        current.raise_for_status()
        known = current.json()["properties"].get("dataContainers") or []
        wanted = known + [c for c in containers if c not in known]
        self.http.patch(self.endpoint["url"] + path, params={"api-version": "2018-05-01"},
                        json={"properties": {"dataContainers": wanted}}).raise_for_status()

    def start(self, name: str, manifest: dict[str, Any]) -> str:
        """Register the manifest's containers, upload it to batchai-triggers/<subscription>/<resource group>/
        <workspace>/<name>.json with the caller's token in its metadata; the run id it starts."""
        self.register(manifest["input"]["container"], manifest["output"]["container"])
        blob = f"{self.sub}/{self.rg}/{self.ws}/{name}.json"
        result = self.blobs.get_blob_client(TRIGGERS, blob).upload_blob(
            json.dumps(manifest).encode(), overwrite=True,
            metadata={"authorization": f"Bearer {self.endpoint['token']}"})
        return sc.run_id(blob, result["etag"])

    def run(self, run: str) -> dict[str, Any] | None:
        path = (f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.BatchAI/workspaces/"
                f"{self.ws}/batchScoringRuns/{run}")
        r = self.http.get(self.endpoint["url"] + path, params={"api-version": "2018-05-01"})
        return r.json() if r.status_code == 200 else None

    def wait(self, run: str, timeout_s: float = 900, on_progress: Any = None, interval_s: float = 0.25) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            body = self.run(run)
            if body and on_progress:
                on_progress(body)
            if body and body["properties"]["state"] in ("succeeded", "failed"):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run} did not end in {timeout_s:.0f} s")
            time.sleep(interval_s)

    def read(self, container: str, name: str) -> bytes:
        return self.blobs.get_blob_client(container, name).download_blob().readall()
