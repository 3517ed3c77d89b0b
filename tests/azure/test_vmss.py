"""The VM scale set provider against the ARM emulator, driven by the real azure-mgmt-compute client."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.vmss import (
    ComputeRejected,
    VmssProvider,
    instance_id_of,
    node_id_of,
    scale_set_name,
)
from shared.emulator.arm import ArmEmulator
from tests.azure.helpers import azure_settings, cluster_spec, wait_until


def running(provider: VmssProvider, key: str, n: int) -> list[str]:
    instances = provider.list_instances(key)
    ok = len(instances) == n and all(i.state == "running" for i in instances)
    return [i.node_id for i in instances] if ok else []


@pytest.fixture
def provider(clients: AzureClients) -> VmssProvider:
    return VmssProvider(clients, azure_settings())


def test_lowpriority_gpu_cluster_is_a_spot_scale_set(arm: ArmEmulator, provider: VmssProvider,
                                                    cloud_config_schema, tmp_path: Path) -> None:
    spec = cluster_spec("STANDARD_NC6", "lowpriority")
    provider.reconcile(spec, 2)
    puts = arm.requests("PUT", "virtualMachineScaleSets")
    assert len(puts) == 1
    put = puts[0]
    name = scale_set_name(spec.cluster_key)
    assert put.path == (f"/subscriptions/{arm.subscription_id}/resourceGroups/batchai-compute/providers/"
                        f"Microsoft.Compute/virtualMachineScaleSets/{name}")
    assert put.query["api-version"] == "2026-04-01" and put.status == 201
    body = put.body
    assert body["location"] == "westeurope"
    assert body["sku"] == {"name": "STANDARD_NC6", "tier": "Standard", "capacity": 2}
    assert body["tags"]["batchai-cluster"] == spec.cluster_key
    settings = azure_settings()
    assert body["identity"] == {"type": "SystemAssigned, UserAssigned",
                                "userAssignedIdentities": {settings.identity_resource_id: {}}}
    props = body["properties"]
    assert props["overprovision"] is False and props["upgradePolicy"] == {"mode": "Manual"}
    vm = props["virtualMachineProfile"]
    assert vm["priority"] == "Spot" and vm["evictionPolicy"] == "Delete" and vm["billingProfile"] == {"maxPrice": -1}
    assert vm["storageProfile"]["imageReference"] == {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc",
                                                      "sku": "2404", "version": "latest"}
    ip = vm["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]
    assert ip["properties"]["subnet"] == {"id": settings.subnet_id}
    os_profile = vm["osProfile"]
    assert os_profile["adminUsername"] == "demo"
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
    assert os_profile["linuxConfiguration"]["ssh"]["publicKeys"] == [
        {"path": "/home/demo/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAAC3Nza demo@host"}]
    user_data = base64.b64decode(os_profile["customData"]).decode()
    checked = cloud_config_schema(user_data, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "nvidia-container-toolkit" in user_data
    assert any(f["path"] == "/etc/systemd/system/batchai-agent.service"
               for f in yaml.safe_load(user_data)["write_files"])

    # The create runs: another tick starts nothing, instances show as creating, then running.
    provider.reconcile(spec, 2)
    assert len(arm.requests("PUT", "virtualMachineScaleSets")) == 1
    assert not arm.requests("PATCH")
    assert {i.state for i in provider.list_instances(spec.cluster_key)} <= {"creating", "running"}
    nodes = wait_until(lambda: running(provider, spec.cluster_key, 2))
    assert nodes == [node_id_of(spec.cluster_key, "0"), node_id_of(spec.cluster_key, "1")]
    addresses = [i.address for i in provider.list_instances(spec.cluster_key)]
    assert all(a.startswith("10.0.") for a in addresses) and len(set(addresses)) == 2
    assert arm.requests("GET", "/networkInterfaces")[0].query["api-version"] == "2018-10-01"


def test_dedicated_cluster_with_custom_image(arm: ArmEmulator, provider: VmssProvider) -> None:
    image = "/subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/images/trainer"
    spec = cluster_spec("STANDARD_D2S_V3", "dedicated", name="cpu",
                        virtualMachineConfiguration={"imageReference": {"publisher": "p", "offer": "o", "sku": "s",
                                                                        "virtualMachineImageId": image}})
    provider.reconcile(spec, 1)
    vm = arm.requests("PUT", "virtualMachineScaleSets")[0].body["properties"]["virtualMachineProfile"]
    assert vm["priority"] == "Regular" and "evictionPolicy" not in vm and "billingProfile" not in vm
    assert vm["storageProfile"]["imageReference"] == {"id": image}
    assert "nvidia" not in base64.b64decode(vm["osProfile"]["customData"]).decode()


def test_raising_the_target_patches_capacity_once(arm: ArmEmulator, provider: VmssProvider) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 1)
    wait_until(lambda: running(provider, spec.cluster_key, 1))
    provider.reconcile(spec, 3)
    patches = arm.requests("PATCH", "virtualMachineScaleSets")
    assert [p.body for p in patches] == [{"sku": {"capacity": 3}}]
    provider.reconcile(spec, 3)  # the update still runs: no second PATCH
    assert len(arm.requests("PATCH")) == 1
    wait_until(lambda: running(provider, spec.cluster_key, 3))
    provider.reconcile(spec, 3)  # steady: nothing to do
    assert len(arm.requests("PATCH")) == 1


def test_removing_idle_nodes_deletes_exactly_those_instances(arm: ArmEmulator, provider: VmssProvider) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 3)
    nodes = wait_until(lambda: running(provider, spec.cluster_key, 3))
    idle = [nodes[0], nodes[2]]
    provider.reconcile(spec, 1, remove=idle)
    posts = arm.requests("POST")
    assert len(posts) == 1 and posts[0].path.endswith(f"/virtualMachineScaleSets/{scale_set_name(spec.cluster_key)}"
                                                      "/delete")
    assert posts[0].body == {"instanceIds": [instance_id_of(idle[0]), instance_id_of(idle[1])]}
    assert posts[0].body == {"instanceIds": ["0", "2"]}
    states = {i.node_id: i.state for i in provider.list_instances(spec.cluster_key)}
    assert states[nodes[0]] == states[nodes[2]] == "deleting"
    provider.reconcile(spec, 1, remove=idle)  # repeated tick: those are deleting already
    assert len(arm.requests("POST")) == 1
    assert wait_until(lambda: running(provider, spec.cluster_key, 1)) == [nodes[1]]
    provider.reconcile(spec, 1, remove=idle)  # gone: nothing to delete, capacity already 1
    assert len(arm.requests("POST")) == 1 and not arm.requests("PATCH")


def test_protected_nodes_survive_a_capacity_decrease(arm: ArmEmulator, provider: VmssProvider) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 3)
    nodes = wait_until(lambda: running(provider, spec.cluster_key, 3))
    provider.protect(spec.cluster_key, [nodes[2]], busy=True)
    put = arm.requests("PUT", "/virtualMachines/2")
    assert len(put) == 1 and put[0].body["properties"]["protectionPolicy"]["protectFromScaleIn"] is True
    provider.protect(spec.cluster_key, [nodes[2]], busy=True)  # already protected: no request
    assert len(arm.requests("PUT", "/virtualMachines/2")) == 1
    provider.reconcile(spec, 1)
    survivors = wait_until(lambda: running(provider, spec.cluster_key, 1))
    assert survivors == [nodes[2]]


def test_throttled_requests_are_retried_after_retry_after(arm: ArmEmulator, provider: VmssProvider) -> None:
    spec = cluster_spec()
    arm.throttle(1)
    provider.reconcile(spec, 1)
    gets = arm.requests("GET", "virtualMachineScaleSets")
    # The emulator throttles again any retry sooner than its Retry-After: one 429, then the real answer,
    # means the client waited as told.
    assert [g.status for g in gets[:2]] == [429, 404]
    assert len(arm.requests("PUT", "virtualMachineScaleSets")) == 1


def test_delete_cluster_deletes_the_scale_set_once(arm: ArmEmulator, provider: VmssProvider) -> None:
    spec = cluster_spec()
    provider.reconcile(spec, 2)
    wait_until(lambda: running(provider, spec.cluster_key, 2))
    assert provider.clusters() == {spec.cluster_key}
    provider.delete_cluster(spec.cluster_key)
    provider.delete_cluster(spec.cluster_key)  # deleting: no second DELETE
    deletes = arm.requests("DELETE", "virtualMachineScaleSets")
    assert len(deletes) == 1 and deletes[0].status == 202
    wait_until(lambda: provider.list_instances(spec.cluster_key) == [])
    provider.delete_cluster(spec.cluster_key)  # gone: returns silently
    assert len(arm.requests("DELETE")) == 1 and provider.clusters() == set()


def test_arm_refusal_is_a_permanent_error(arm: ArmEmulator, clients: AzureClients) -> None:
    provider = VmssProvider(clients, azure_settings())
    with pytest.raises(ComputeRejected) as err:
        provider.reconcile(cluster_spec(vm_size=""), 1)
    assert err.value.code == "InvalidParameter"
    with pytest.raises(ComputeRejected, match="SubnetRequired"):
        VmssProvider(clients, azure_settings(subnet_id="")).reconcile(cluster_spec(), 1)


def test_the_emulator_answers_long_running_operations_like_arm(arm: ArmEmulator, clients: AzureClients) -> None:
    """The SDK's own ARM poller follows Azure-AsyncOperation to completion (InProgress, then Succeeded)."""
    provider = VmssProvider(clients, azure_settings())
    spec = cluster_spec()
    model = provider.scale_set_model(spec, 1)
    result = clients.compute.virtual_machine_scale_sets.begin_create_or_update(
        "batchai-compute", scale_set_name(spec.cluster_key), model).result()
    assert result.properties.provisioning_state == "Succeeded" and result.sku.capacity == 1
    polls = arm.requests("GET", "/operations/")
    assert [p.response["status"] for p in polls] == ["InProgress", "Succeeded"]
    assert "customData" not in result.properties.virtual_machine_profile.os_profile  # never returned by GET
