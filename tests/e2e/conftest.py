"""End-to-end fixtures: the whole local stack (Azurite, trigger host, local nodes) and an SDK client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.batchai import BatchAI, models

from tests.polling import wait_until  # noqa: F401 - shared by this package's tests


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


class Stack:
    def __init__(self, endpoint: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.rg = endpoint["resource_group"]
        self.sub = endpoint["subscription_id"]
        self.client = BatchAI(StaticToken(endpoint["token"]), self.sub,
                                              base_url=endpoint["url"], connection_verify=endpoint["ca_file"])

    def cluster_id(self, ws: str, cluster: str) -> str:
        return (f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.BatchAI"
                f"/workspaces/{ws}/clusters/{cluster}")

    def workspace(self, ws: str) -> None:
        self.client.workspaces.begin_create(self.rg, ws, models.WorkspaceCreateParameters(location="local")).result()

    def manual_cluster(self, ws: str, name: str, nodes: int, **kwargs: Any) -> None:
        self.client.clusters.begin_create(self.rg, ws, name, models.ClusterCreateParameters(
            vm_size="STANDARD_D1_V2",
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=nodes)),
            user_account_settings=models.UserAccountSettings(admin_user_name="demo", admin_user_password="x"),
            **kwargs)).result()

    def idle_nodes(self, ws: str, cluster: str, count: int, timeout: float = 90) -> None:
        def ready() -> bool:
            c = self.client.clusters.get(self.rg, ws, cluster)
            return (c.node_state_counts.idle_node_count or 0) >= count
        wait_until(ready, timeout, what=f"{count} idle nodes on {cluster}")

    def submit(self, ws: str, exp: str, job: str, cluster: str, command: str, **kwargs: Any) -> None:
        params = models.JobCreateParameters(
            cluster=models.ResourceId(id=self.cluster_id(ws, cluster)),
            std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
            custom_toolkit_settings=models.CustomToolkitSettings(command_line=command), **kwargs)
        self.client.jobs.begin_create(self.rg, ws, exp, job, params).result()

    def wait_job(self, ws: str, exp: str, job: str, timeout: float = 120) -> models.Job:
        def ended() -> models.Job | None:
            j = self.client.jobs.get(self.rg, ws, exp, job)
            return j if j.execution_state in ("succeeded", "failed") else None
        return wait_until(ended, timeout, what=f"job {job} to end")

    def output_files(self, ws: str, exp: str, job: str, directory_id: str = "stdouterr",
                     directory: str = ".") -> dict[str, models.File]:
        files = self.client.jobs.list_output_files(
            self.rg, ws, exp, job, models.JobsListOutputFilesOptions(outputdirectoryid=directory_id,
                                                                     directory=directory))
        return {f.name: f for f in files}

    def download(self, url: str) -> str:
        r = httpx.get(url, timeout=30)
        r.raise_for_status()
        return r.text


@pytest.fixture(scope="session")
def stack(local_stack: dict[str, Any]) -> Stack:
    return Stack(local_stack)
