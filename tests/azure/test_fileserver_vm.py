"""File server VMs against the ARM emulator, driven by the real compute and network clients."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.capabilities import ComputeRejected
from shared.adapters.compute.fileserver_vm import FileServerSpec, FileServerVms, resource_names
from shared.emulator.arm import ArmEmulator
from tests.azure.helpers import SUBSCRIPTION, azure_settings, wait_until

FS_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/demo/providers/Microsoft.BatchAI/workspaces/ws/fileServers/nfs1"
PROPERTIES = {
    "vmSize": "STANDARD_D2S_V3",
    "sshConfiguration": {"userAccountSettings": {"adminUserName": "demo",
                                                 "adminUserSshPublicKey": "ssh-ed25519 AAAAC3Nza demo@host"}},
    "dataDisks": {"diskSizeInGB": 64, "diskCount": 2, "storageAccountType": "Premium_LRS", "cachingType": "readwrite"},
}


@pytest.fixture
def servers(clients: AzureClients) -> FileServerVms:
    return FileServerVms(clients, azure_settings())


def test_file_server_is_provisioned_then_reports_mount_settings(arm: ArmEmulator, servers: FileServerVms,
                                                                 cloud_config_schema, tmp_path: Path) -> None:
    spec = FileServerSpec.from_properties(FS_ID, PROPERTIES)
    names = resource_names(spec)
    first = servers.provision_file_server(spec)
    assert first.state == "creating"
    disk_puts = arm.requests("PUT", "/disks/")
    assert [p.path.rsplit("/", 1)[-1] for p in disk_puts] == list(names.disks)
    assert all(p.query["api-version"] == "2026-03-02" for p in disk_puts)
    assert disk_puts[0].body == {"location": "westeurope", "sku": {"name": "Premium_LRS"},
                                 "tags": {"batchai-file-server": FS_ID},
                                 "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}
    nic_puts = arm.requests("PUT", "/networkInterfaces/")
    assert len(nic_puts) == 1 and nic_puts[0].query["api-version"] == "2026-03-01"
    ip_config = nic_puts[0].body["properties"]["ipConfigurations"][0]["properties"]
    assert ip_config["subnet"] == {"id": azure_settings().subnet_id}
    assert not arm.requests("PUT", "/virtualMachines/")  # disks and NIC first

    done = wait_until(lambda: (op := servers.provision_file_server(spec)).state == "succeeded" and op)
    assert len(arm.requests("PUT", "/disks/")) == 2 and len(arm.requests("PUT", "/networkInterfaces/")) == 1
    vm_puts = arm.requests("PUT", "/virtualMachines/")
    assert len(vm_puts) == 1
    props = vm_puts[0].body["properties"]
    assert props["hardwareProfile"] == {"vmSize": "STANDARD_D2S_V3"}
    rg_id = f"/subscriptions/{arm.subscription_id}/resourceGroups/batchai-compute/providers"
    assert props["storageProfile"]["dataDisks"] == [
        {"lun": i, "caching": "ReadWrite", "createOption": "Attach",
         "managedDisk": {"id": f"{rg_id}/Microsoft.Compute/disks/{name}"}} for i, name in enumerate(names.disks)]
    assert props["networkProfile"]["networkInterfaces"] == [
        {"id": f"{rg_id}/Microsoft.Network/networkInterfaces/{names.nic}", "properties": {"primary": True}}]
    user_data = base64.b64decode(props["osProfile"]["customData"]).decode()
    checked = cloud_config_schema(user_data, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    script = {f["path"]: f["content"] for f in yaml.safe_load(user_data)["write_files"]}["/opt/batchai/file-server.sh"]
    assert "--raid-devices=2" in script and "exportfs -ra" in script

    nic = arm.requests("GET", f"/networkInterfaces/{names.nic}")[-1].response
    ip = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
    assert done.mount_settings == {"mountPoint": "/data", "fileServerInternalIP": ip, "fileServerType": "nfs"}
    assert ip.startswith("10.0.")
    servers.provision_file_server(spec)  # steady: nothing new
    assert len(arm.requests("PUT")) == 4


def test_deleting_removes_vm_then_disks_and_nic(arm: ArmEmulator, servers: FileServerVms) -> None:
    spec = FileServerSpec.from_properties(FS_ID, PROPERTIES)
    names = resource_names(spec)
    wait_until(lambda: servers.provision_file_server(spec).state == "succeeded")
    arm.clear_log()
    assert servers.delete_file_server(spec).state == "deleting"
    assert [r.path.rsplit("/", 1)[-1] for r in arm.requests("DELETE")] == [names.vm]
    wait_until(lambda: servers.delete_file_server(spec).state == "deleted")
    deleted = sorted(r.path.rsplit("/", 1)[-1] for r in arm.requests("DELETE"))
    assert deleted == sorted([names.vm, names.nic, *names.disks])  # each exactly once
    assert all(r.status in (202, 204) for r in arm.requests("DELETE"))
    assert not [rid for rid in arm.resources if "bai-fs-" in rid]
    assert servers.delete_file_server(spec).state == "deleted"


def test_attached_disks_cannot_be_deleted_first(arm: ArmEmulator, servers: FileServerVms,
                                                clients: AzureClients) -> None:
    """The emulator refuses what Azure refuses, which is why deletion goes VM first."""
    spec = FileServerSpec.from_properties(FS_ID, PROPERTIES)
    wait_until(lambda: servers.provision_file_server(spec).state == "succeeded")
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as err:
        clients.compute.disks.begin_delete("batchai-compute", resource_names(spec).disks[0], polling=False)
    assert err.value.status_code == 409


def test_no_subnet_is_a_permanent_error(arm: ArmEmulator, clients: AzureClients) -> None:
    servers = FileServerVms(clients, azure_settings(subnet_id=""))
    with pytest.raises(ComputeRejected, match="SubnetRequired"):
        servers.provision_file_server(FileServerSpec.from_properties(FS_ID, PROPERTIES))
