"""The ACI provider against the ARM emulator, driven by the real azure-mgmt-containerinstance client."""

from __future__ import annotations

import pytest

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.aci import AciProvider, container_task, group_name
from shared.adapters.compute.capabilities import ComputeRejected, ContainerTask, TaskRunner
from shared.emulator.arm import ArmEmulator
from tests.azure.helpers import azure_settings, cluster_spec, wait_until

SHARE = {"accountName": "userfiles", "azureFileUrl": "https://userfiles.file.core.windows.net/data",
         "credentials": {"accountKey": "U0hBUkVLRVk="}, "relativeMountPath": "afs"}
JOB = {
    "containerSettings": {"imageSourceRegistry": {"serverUrl": "myregistry.azurecr.io",
                                                  "image": "myregistry.azurecr.io/trainer:1",
                                                  "credentials": {"username": "puller", "password": "REGPASS"}}},
    "environmentVariables": [{"name": "EPOCHS", "value": "3"}],
    "secrets": [{"name": "API_TOKEN", "value": "s3cr3t"}],
    "mountVolumes": {"azureFileShares": [dict(SHARE, relativeMountPath="jobafs")]},
}


@pytest.fixture
def provider(clients: AzureClients) -> AciProvider:
    return AciProvider(clients, azure_settings())


def task(task_id: str = "asg-1", command: str = "python train.py --epochs $EPOCHS") -> ContainerTask:
    cluster = cluster_spec("STANDARD_D2S_V3", "dedicated", name="aci", nodeSetup={"mountVolumes": {
        "azureFileShares": [SHARE]}})
    return container_task(task_id, cluster, "sub|demo|ws|exp|job1", JOB, command, {"AZ_BATCHAI_TASK_INDEX": "0"})


def test_a_task_runs_as_one_container_group(arm: ArmEmulator, provider: AciProvider) -> None:
    assert isinstance(provider, TaskRunner)
    t = task()
    arm.aci_outcomes[group_name(t.task_id)] = (0, "epoch 1\nepoch 2\nepoch 3\n")
    provider.run_task(t)
    puts = arm.requests("PUT", "containerGroups")
    assert len(puts) == 1 and puts[0].query["api-version"] == "2023-05-01" and puts[0].status == 201
    assert puts[0].path.endswith(f"/resourceGroups/batchai-compute/providers/Microsoft.ContainerInstance/"
                                 f"containerGroups/{group_name(t.task_id)}")
    body = puts[0].body
    props = body["properties"]
    assert body["location"] == "westeurope" and props["restartPolicy"] == "Never" and props["osType"] == "Linux"
    assert body["tags"]["batchai-cluster"] == t.cluster_key and body["tags"]["batchai-task"] == "asg-1"
    container = props["containers"][0]["properties"]
    assert container["image"] == "myregistry.azurecr.io/trainer:1"
    assert container["command"] == ["/bin/sh", "-c", "python train.py --epochs $EPOCHS"]
    assert container["resources"] == {"requests": {"cpu": 2.0, "memoryInGB": 8.0}}
    env = {e["name"]: e for e in container["environmentVariables"]}
    assert env["EPOCHS"] == {"name": "EPOCHS", "value": "3"}
    assert env["API_TOKEN"] == {"name": "API_TOKEN", "secureValue": "s3cr3t"}
    assert env["AZ_BATCHAI_MOUNT_ROOT"]["value"] == "/mnt/batch/tasks/shared/LS_root/mounts"
    assert container["volumeMounts"] == [
        {"name": "cluster0", "mountPath": "/mnt/batch/tasks/shared/LS_root/mounts/afs", "readOnly": False},
        {"name": "job0", "mountPath": "/mnt/batch/tasks/shared/LS_root/jobs/mounts/jobafs", "readOnly": False}]
    assert props["volumes"][0] == {"name": "cluster0", "azureFile": {
        "shareName": "data", "readOnly": False, "storageAccountName": "userfiles", "storageAccountKey": "U0hBUkVLRVk="}}
    assert props["imageRegistryCredentials"] == [
        {"server": "myregistry.azurecr.io", "username": "puller", "password": "REGPASS"}]
    assert body["identity"]["type"] == "UserAssigned"

    provider.run_task(t)  # a repeated start finds the group: no second PUT
    assert len(arm.requests("PUT", "containerGroups")) == 1
    assert provider.task_status(t.task_id).state in ("pending", "running")
    status = wait_until(lambda: (s := provider.task_status(t.task_id)).state in ("succeeded", "failed") and s)
    assert (status.state, status.exit_code) == ("succeeded", 0)
    assert provider.fetch_logs(t.task_id) == "epoch 1\nepoch 2\nepoch 3\n"
    assert arm.requests("GET", "/containers/task/logs")[0].status == 200
    # Azure never gives secrets back.
    got = arm.requests("GET", f"containerGroups/{group_name(t.task_id)}")[-1].response
    assert "s3cr3t" not in str(got) and "U0hBUkVLRVk=" not in str(got) and "REGPASS" not in str(got)

    assert [i.node_id for i in provider.list_instances(t.cluster_key)] == [group_name(t.task_id)]
    provider.delete_task(t.task_id)
    assert len(arm.requests("DELETE", "containerGroups")) == 1
    wait_until(lambda: provider.task_status(t.task_id).state == "missing")
    provider.delete_task(t.task_id)  # gone: silent
    assert provider.fetch_logs(t.task_id) == ""


def test_a_failing_task_reports_its_exit_code(arm: ArmEmulator, provider: AciProvider) -> None:
    t = task("asg-2", "exit 3")
    arm.aci_outcomes[group_name(t.task_id)] = (3, "boom\n")
    provider.run_task(t)
    status = wait_until(lambda: (s := provider.task_status(t.task_id)).state in ("succeeded", "failed") and s)
    assert (status.state, status.exit_code) == ("failed", 3)
    assert provider.fetch_logs(t.task_id) == "boom\n"


def test_gpu_sizes_are_rejected(arm: ArmEmulator, provider: AciProvider) -> None:
    gpu = cluster_spec("STANDARD_NC6", "dedicated", name="acigpu")
    with pytest.raises(ComputeRejected, match="ACI GPU containers were retired on 2025-07-14") as err:
        provider.reconcile(gpu, 1)
    assert err.value.code == "GpuNotSupported"
    t = container_task("asg-3", gpu, "sub|demo|ws|exp|job2", {}, "nvidia-smi", {})
    with pytest.raises(ComputeRejected, match="retired on 2025-07-14"):
        provider.run_task(t)
    assert not arm.requests("PUT")


def test_delete_cluster_deletes_its_groups_only(arm: ArmEmulator, provider: AciProvider) -> None:
    mine = task("asg-4")
    other = container_task("asg-5", cluster_spec("STANDARD_D2S_V3", "dedicated", name="other"),
                           "sub|demo|ws|exp|job3", {}, "true", {})
    provider.run_task(mine)
    provider.run_task(other)
    assert provider.clusters() == {mine.cluster_key, other.cluster_key}
    provider.delete_cluster(mine.cluster_key)
    deletes = arm.requests("DELETE")
    assert len(deletes) == 1 and deletes[0].path.endswith(group_name("asg-4"))
    wait_until(lambda: provider.list_instances(mine.cluster_key) == [])
    assert len(provider.list_instances(other.cluster_key)) == 1
