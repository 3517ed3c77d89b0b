"""Every operation of the 2018-05-01 API through the official SDK (azure-mgmt-batchai 7.0.0)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.batchai import BatchAI, models

from shared.domain.contract import example
from tests.api.conftest import API, unique, wait_until


def cluster_body() -> dict:
    return copy.deepcopy(example("PutCluster.json")["parameters"]["parameters"])


def job_params(client: BatchAI, rg: str, ws: str, cluster: str, command: str = "echo hi") -> models.JobCreateParameters:
    cluster_id = (f"/subscriptions/{client._config.subscription_id}/resourceGroups/{rg}/providers/Microsoft.BatchAI"
                  f"/workspaces/{ws}/clusters/{cluster}")
    return models.JobCreateParameters(
        cluster=models.ResourceId(id=cluster_id), node_count=1, std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out",
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=command),
        output_directories=[models.OutputDirectory(id="MODEL", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out")],
        secrets=[models.EnvironmentVariableWithSecretValue(name="TOKEN", value="s3cret")])


def test_done_when_flow(client: BatchAI, rg: str) -> None:
    ws, cluster, exp, job = unique("ws"), "demo_cluster", unique("exp"), unique("job")
    w = client.workspaces.begin_create(rg, ws, models.WorkspaceCreateParameters(location="eastus",
                                                                                tags={"team": "a"})).result()
    assert (w.name, w.location, w.tags, w.provisioning_state) == (ws, "eastus", {"team": "a"}, "succeeded")
    assert w.creation_time is not None

    c = client.clusters.begin_create(rg, ws, cluster, cluster_body()).result()
    assert c.vm_size == "STANDARD_NC6" and c.scale_settings.manual.target_node_count == 1
    assert c.scale_settings.manual.node_deallocation_option == "requeue"
    assert c.user_account_settings.admin_user_name == "admin_user_name"
    assert c.user_account_settings.admin_user_password is None  # stored, never returned
    share = c.node_setup.mount_volumes.azure_file_shares[0]
    assert share.credentials.account_key is None and share.relative_mount_path == "azfiles"
    assert (c.allocation_state, c.current_node_count) == ("steady", 0)
    assert c.node_state_counts.idle_node_count == 0
    assert c.virtual_machine_configuration.image_reference.offer == "UbuntuServer"

    e = client.experiments.begin_create(rg, ws, exp).result()
    assert e.name == exp and e.provisioning_state == "succeeded"

    j = client.jobs.begin_create(rg, ws, exp, job, job_params(client, rg, ws, cluster)).result()
    assert (j.execution_state, j.tool_type, j.node_count, j.scheduling_priority) == ("queued", "custom", 1, "normal")
    assert j.cluster.id.endswith(f"/workspaces/{ws}/clusters/{cluster}")
    assert j.job_output_directory_path_segment and j.secrets[0].value is None
    assert j.constraints.max_wall_clock_time.days == 7

    assert client.workspaces.get(rg, ws).id == w.id
    assert client.clusters.get(rg, ws, cluster).id == c.id
    assert client.experiments.get(rg, ws, exp).id == e.id
    got = client.jobs.get(rg, ws, exp, job)
    assert got.id == j.id and got.job_output_directory_path_segment == j.job_output_directory_path_segment
    assert ws in [x.name for x in client.workspaces.list_by_resource_group(rg)]
    assert ws in [x.name for x in client.workspaces.list()]
    assert [x.name for x in client.clusters.list_by_workspace(rg, ws)] == [cluster]
    assert [x.name for x in client.experiments.list_by_workspace(rg, ws)] == [exp]
    assert [x.name for x in client.jobs.list_by_experiment(rg, ws, exp)] == [job]

    client.jobs.begin_delete(rg, ws, exp, job).result()
    with pytest.raises(ResourceNotFoundError):
        client.jobs.get(rg, ws, exp, job)
    client.experiments.begin_delete(rg, ws, exp).result()
    with pytest.raises(ResourceNotFoundError):
        client.experiments.get(rg, ws, exp)
    client.clusters.begin_delete(rg, ws, cluster).result()
    with pytest.raises(ResourceNotFoundError):
        client.clusters.get(rg, ws, cluster)
    client.workspaces.begin_delete(rg, ws).result()
    with pytest.raises(ResourceNotFoundError):
        client.workspaces.get(rg, ws)


def test_remaining_operations(client: BatchAI, http: httpx.Client, rg: str, ws_path: Callable[[str], str]) -> None:
    ws, exp = unique("ws"), unique("exp")
    client.workspaces.begin_create(rg, ws, models.WorkspaceCreateParameters(location="eastus")).result()
    updated = client.workspaces.update(rg, ws, models.WorkspaceUpdateParameters(tags={"stage": "test"}))
    assert updated.tags == {"stage": "test"} and client.workspaces.get(rg, ws).tags == {"stage": "test"}

    client.clusters.begin_create(rg, ws, "c1", models.ClusterCreateParameters(
        vm_size="STANDARD_D1", user_account_settings=models.UserAccountSettings(admin_user_name="u"),
        scale_settings=models.ScaleSettings(auto_scale=models.AutoScaleSettings(minimum_node_count=0,
                                                                                maximum_node_count=2)))).result()
    patched = client.clusters.update(rg, ws, "c1", models.ClusterUpdateParameters(scale_settings=models.ScaleSettings(
        manual=models.ManualScaleSettings(target_node_count=3))))
    assert patched.scale_settings.manual.target_node_count == 3 and patched.scale_settings.auto_scale is None
    assert list(client.clusters.list_remote_login_information(rg, ws, "c1")) == []

    fs = client.file_servers.begin_create(rg, ws, "nfs", models.FileServerCreateParameters(
        vm_size="STANDARD_D2", ssh_configuration=models.SshConfiguration(
            user_account_settings=models.UserAccountSettings(admin_user_name="u", admin_user_password="p")),
        data_disks=models.DataDisks(disk_size_in_gb=10, disk_count=2, storage_account_type="Standard_LRS"))).result()
    assert fs.provisioning_state == "succeeded" and fs.mount_settings.mount_point == "/mnt/data"
    assert fs.data_disks.caching_type == "none"
    assert fs.ssh_configuration.user_account_settings.admin_user_password is None
    # The 7.0.0 SDK has no file server get/delete although the contract does: raw HTTP for those.
    got = http.get(f"{ws_path(ws)}/fileServers/nfs?{API}")
    assert got.status_code == 200 and got.json()["id"] == fs.id and got.headers["ETag"]
    assert [x.name for x in client.file_servers.list_by_workspace(rg, ws)] == ["nfs"]

    client.experiments.begin_create(rg, ws, exp).result()
    client.jobs.begin_create(rg, ws, exp, "j1", job_params(client, rg, ws, "c1")).result()
    assert list(client.jobs.list_remote_login_information(rg, ws, exp, "j1")) == []
    files = list(client.jobs.list_output_files(rg, ws, exp, "j1", models.JobsListOutputFilesOptions(
        outputdirectoryid="stdouterr")))
    assert files == []
    client.jobs.begin_terminate(rg, ws, exp, "j1").result()
    terminated = client.jobs.get(rg, ws, exp, "j1")
    assert terminated.execution_state == "failed"
    assert terminated.execution_info.errors and terminated.execution_info.errors[0].code == "JobTerminated"

    usages = {u.name.value: u for u in client.usages.list("eastus")}
    assert usages["Clusters"].current_value >= 1
    assert usages["Clusters"].limit == int(os.environ.get("BATCHAI_QUOTA_CLUSTERS", "20"))
    ops = [o.name for o in client.operations.list()]
    assert "Microsoft.BatchAI/clusters/read" in ops and "Microsoft.BatchAI/workspaces/write" in ops

    assert http.delete(f"{ws_path(ws)}/fileServers/nfs?{API}").status_code == 202
    wait_until(lambda: http.get(f"{ws_path(ws)}/fileServers/nfs?{API}").status_code == 404,
               what="the file server's deletion")
    client.workspaces.begin_delete(rg, ws).result()
    with pytest.raises(ResourceNotFoundError):
        client.workspaces.get(rg, ws)


def test_sdk_surfaces_validation_errors(client: BatchAI, rg: str) -> None:
    ws = unique("ws")
    client.workspaces.begin_create(rg, ws, models.WorkspaceCreateParameters(location="eastus")).result()
    with pytest.raises(HttpResponseError) as e:
        client.clusters.begin_create(rg, ws, "bad", models.ClusterCreateParameters(
            vm_size="STANDARD_D1", user_account_settings=models.UserAccountSettings(admin_user_name="u"),
            scale_settings=models.ScaleSettings(auto_scale=models.AutoScaleSettings(minimum_node_count=5,
                                                                                    maximum_node_count=2)))).result()
    assert e.value.status_code == 400
    assert e.value.error.target == "properties.scaleSettings.autoScale.minimumNodeCount"
    client.workspaces.begin_delete(rg, ws).result()
