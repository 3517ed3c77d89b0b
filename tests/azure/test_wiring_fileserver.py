"""File servers on Azure through the service (provider vmss): create records `creating`, the reconcile
tick provisions the VM (real compute and network clients against the ARM emulator), stores mountSettings
and `succeeded`; delete removes the VM, then its disks and NIC, then the document."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.compute.fileserver_vm import FileServerSpec, resource_names
from shared.config import Settings
from shared.domain.errors import ApiError
from shared.domain.keys import WorkspaceRef
from shared.emulator.arm import ArmEmulator
from shared.services import fileservers, removal, workspaces
from shared.services.fileserver_reconcile import reconcile_file_servers
from tests.azure.helpers import SUBSCRIPTION, azure_settings

BODY = {"location": "westeurope", "properties": {
    "vmSize": "STANDARD_D2S_V3",
    "sshConfiguration": {"userAccountSettings": {"adminUserName": "demo",
                                                 "adminUserSshPublicKey": "ssh-ed25519 AAAAC3Nza demo@host"}},
    "dataDisks": {"diskSizeInGB": 64, "diskCount": 2, "storageAccountType": "Premium_LRS"}}}
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def vmss_settings(arm: ArmEmulator, conn: str) -> Settings:
    azure = azure_settings(arm_endpoint=arm.url, arm_ca_file=arm.ca_file, arm_token="fake-arm-token")
    return dataclasses.replace(Settings.from_env(), storage_connection_string=conn, provider="vmss", azure=azure)


def test_file_server_is_provisioned_by_the_tick_and_deleted(arm: ArmEmulator, storage_conn: str) -> None:
    settings = vmss_settings(arm, storage_conn)
    ws = WorkspaceRef(SUBSCRIPTION, "demo", f"ws{uuid.uuid4().hex[:8]}")
    workspaces.create(settings, ws, {"location": "westeurope"})
    created = fileservers.create(settings, ws, "nfs1", BODY).body
    assert created["properties"]["provisioningState"] == "creating"
    assert created["properties"].get("mountSettings") in (None, {})
    assert not arm.requests()  # the API call starts nothing in Azure itself
    fs_id = created["id"]
    names = resource_names(FileServerSpec.from_properties(fs_id, BODY["properties"]))

    states = []
    for step in range(12):
        tick = reconcile_file_servers(settings, T0 + timedelta(seconds=step))
        states.append(tick.states.get(fs_id))
        if states[-1] != "creating":
            break
    assert states[0] == "creating" and states[-1] == "succeeded"
    assert sorted(p.path.rsplit("/", 1)[1] for p in arm.requests("PUT", "/disks/")) == sorted(names.disks)
    assert [p.path.rsplit("/", 1)[1] for p in arm.requests("PUT", "/networkInterfaces/")] == [names.nic]
    vm_puts = arm.requests("PUT", "/virtualMachines/")
    assert len(vm_puts) == 1 and vm_puts[0].path.endswith(f"/resourceGroups/batchai-compute/providers/"
                                                          f"Microsoft.Compute/virtualMachines/{names.vm}")
    assert vm_puts[0].body["properties"]["hardwareProfile"]["vmSize"] == "STANDARD_D2S_V3"
    assert len(vm_puts[0].body["properties"]["storageProfile"]["dataDisks"]) == 2

    shown = fileservers.get(settings, ws, "nfs1").body["properties"]
    assert shown["provisioningState"] == "succeeded"
    mount = shown["mountSettings"]
    assert mount["mountPoint"] == "/data" and mount["fileServerInternalIP"].startswith("10.0.")
    assert reconcile_file_servers(settings, T0 + timedelta(minutes=1)).states == {}  # steady: nothing more
    assert len(arm.requests("PUT")) == len(names.disks) + 2

    removal.delete_fileserver(settings, ws, "nfs1")
    assert fileservers.get(settings, ws, "nfs1").body["properties"]["provisioningState"] == "deleting"
    deleted: list[str] = []
    for step in range(12):
        deleted += reconcile_file_servers(settings, T0 + timedelta(minutes=2, seconds=step)).deleted
        if deleted:
            break
    assert deleted == [fs_id]
    assert [r.path.rsplit("/", 1)[1] for r in arm.requests("DELETE", "/virtualMachines/")] == [names.vm]
    assert sorted(r.path.rsplit("/", 1)[1] for r in arm.requests("DELETE", "/disks/")) == sorted(names.disks)
    assert [r.path.rsplit("/", 1)[1] for r in arm.requests("DELETE", "/networkInterfaces/")] == [names.nic]
    with pytest.raises(ApiError) as gone:
        fileservers.get(settings, ws, "nfs1")
    assert gone.value.status == 404


def test_an_arm_refusal_fails_the_file_server(arm: ArmEmulator, storage_conn: str) -> None:
    settings = vmss_settings(arm, storage_conn)
    settings = dataclasses.replace(settings, azure=dataclasses.replace(settings.azure, subnet_id=""))
    ws = WorkspaceRef(SUBSCRIPTION, "demo", f"ws{uuid.uuid4().hex[:8]}")
    workspaces.create(settings, ws, {"location": "westeurope"})
    fs_id = fileservers.create(settings, ws, "nosubnet", BODY).body["id"]
    tick = reconcile_file_servers(settings, T0)
    assert tick.states[fs_id] == "failed"
    assert fileservers.get(settings, ws, "nosubnet").body["properties"]["provisioningState"] == "failed"
