"""File servers on Azure: one VM per Batch AI file server, with `diskCount` managed data disks in
RAID 0 (mdadm), mounted at /data and exported over NFS; a NIC in the file server's subnet.

Resource names derive from the file server's ARM id (`resource_names`). Both entry points are
non-blocking and idempotent: call them on every tick and they start whatever is missing next,
in order (disks and NIC, then the VM that attaches them; for deletion the VM first, then its
disks and NIC, which Azure refuses to delete while attached), and report where things stand.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import models as cm
from azure.mgmt.network import models as nm

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.capabilities import ComputeRejected, text
from shared.adapters.compute.fileserver_cloud_init import render_file_server_cloud_init
from shared.config import AzureComputeSettings

MOUNT_POINT = "/data"
UBUNTU_2204 = {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
               "version": "latest"}
CACHING = {"none": "None", "readonly": "ReadOnly", "readwrite": "ReadWrite"}


@dataclass(frozen=True)
class FileServerSpec:
    arm_id: str  # the Batch AI file server's id
    vm_size: str
    admin_user: str
    ssh_public_key: str
    disk_count: int
    disk_size_gb: int
    storage_account_type: str  # Standard_LRS | Premium_LRS
    caching: str = "none"
    subnet_id: str = ""
    admin_password: str = ""

    @classmethod
    def from_properties(cls, arm_id: str, properties: Mapping[str, Any]) -> FileServerSpec:
        """From the 2018-05-01 FileServerCreateParameters properties."""
        account = (properties.get("sshConfiguration") or {}).get("userAccountSettings") or {}
        disks = properties.get("dataDisks") or {}
        return cls(arm_id=arm_id, vm_size=properties["vmSize"], admin_user=account.get("adminUserName") or "batchai",
                   ssh_public_key=account.get("adminUserSshPublicKey") or "",
                   admin_password=account.get("adminUserPassword") or "",
                   disk_count=int(disks["diskCount"]), disk_size_gb=int(disks["diskSizeInGB"]),
                   storage_account_type=disks["storageAccountType"], caching=disks.get("cachingType") or "none",
                   subnet_id=(properties.get("subnet") or {}).get("id") or "")


@dataclass(frozen=True)
class ResourceNames:
    vm: str
    nic: str
    disks: tuple[str, ...]


@dataclass(frozen=True)
class FileServerOperation:
    state: str  # "creating" | "succeeded" | "failed" | "deleting" | "deleted"
    mount_settings: dict[str, str] = field(default_factory=dict)
    detail: str = ""


def resource_names(spec: FileServerSpec) -> ResourceNames:
    name = spec.arm_id.rstrip("/").rsplit("/", 1)[-1]
    digest = hashlib.sha256(spec.arm_id.lower().encode()).hexdigest()[:8]
    base = f"bai-fs-{re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')[:30] or 'x'}-{digest}"
    return ResourceNames(vm=base, nic=f"{base}-nic", disks=tuple(f"{base}-disk{i}" for i in range(spec.disk_count)))


def _state(resource: Any) -> str:
    return text(getattr(resource.properties, "provisioning_state", ""))


class FileServerVms:
    """Provisions and deletes file server VMs in the compute resource group."""

    def __init__(self, clients: AzureClients, settings: AzureComputeSettings,
                 open_secret: Callable[[str], str] | None = None) -> None:
        self._open = open_secret or (lambda value: value)
        self._compute = clients.compute
        self._network = clients.network
        self._settings = settings
        self._rg = settings.resource_group

    def provision_file_server(self, spec: FileServerSpec) -> FileServerOperation:
        names = resource_names(spec)
        try:
            vm = self._get(self._compute.virtual_machines, names.vm)
            if vm is not None:
                return self._vm_status(vm, names)
            ready = [self._ensure_disk(spec, name) for name in names.disks]
            ready.append(self._ensure_nic(spec, names.nic))
            if all(ready):
                self._compute.virtual_machines.begin_create_or_update(self._rg, names.vm, self.vm_model(spec),
                                                                      polling=False)
        except HttpResponseError as err:
            if err.status_code == 429 or (err.status_code or 0) >= 500:
                raise
            raise ComputeRejected(getattr(err.error, "code", None) or str(err.status_code),
                                  getattr(err.error, "message", None) or str(err)) from err
        return FileServerOperation("creating")

    def delete_file_server(self, spec: FileServerSpec) -> FileServerOperation:
        names = resource_names(spec)
        vm = self._get(self._compute.virtual_machines, names.vm)
        if vm is not None:
            if _state(vm) != "deleting":
                self._compute.virtual_machines.begin_delete(self._rg, names.vm, polling=False)
            return FileServerOperation("deleting")
        left = 0
        for name in names.disks:
            disk = self._get(self._compute.disks, name)
            if disk is not None:
                left += 1
                if _state(disk) != "deleting":
                    self._compute.disks.begin_delete(self._rg, name, polling=False)
        nic = self._get(self._network.network_interfaces, names.nic)
        if nic is not None:
            left += 1
            if _state(nic) != "deleting":
                self._network.network_interfaces.begin_delete(self._rg, names.nic, polling=False)
        return FileServerOperation("deleting" if left else "deleted")

    # -- models ---------------------------------------------------------------------------------
    def vm_model(self, spec: FileServerSpec) -> cm.VirtualMachine:
        names = resource_names(spec)
        rg_id = f"/subscriptions/{self._settings.subscription_id}/resourceGroups/{self._rg}"
        disk_ids = [f"{rg_id}/providers/Microsoft.Compute/disks/{name}" for name in names.disks]
        nic_id = f"{rg_id}/providers/Microsoft.Network/networkInterfaces/{names.nic}"
        if not spec.ssh_public_key and not spec.admin_password:
            raise ComputeRejected("CredentialsRequired", "the file server needs an SSH public key or a password")
        linux = cm.LinuxConfiguration(disable_password_authentication=not spec.admin_password)
        if spec.ssh_public_key:
            linux.ssh = cm.SshConfiguration(public_keys=[cm.SshPublicKey(
                path=f"/home/{spec.admin_user}/.ssh/authorized_keys", key_data=spec.ssh_public_key)])
        os_profile = cm.OSProfile(
            computer_name=names.vm[:64], admin_username=spec.admin_user, linux_configuration=linux,
            custom_data=base64.b64encode(render_file_server_cloud_init(spec.disk_count).encode()).decode())
        if spec.admin_password:
            os_profile.admin_password = self._open(spec.admin_password)  # sealed at rest, opened for ARM only
        caching = CACHING.get(spec.caching.lower(), "None")
        return cm.VirtualMachine(
            location=self._settings.location, tags={"batchai-file-server": spec.arm_id[:256]},
            properties=cm.VirtualMachineProperties(
                hardware_profile=cm.HardwareProfile(vm_size=spec.vm_size),
                storage_profile=cm.StorageProfile(
                    image_reference=cm.ImageReference(**UBUNTU_2204),
                    os_disk=cm.OSDisk(create_option="FromImage", delete_option="Delete",
                                      managed_disk=cm.ManagedDiskParameters(storage_account_type="StandardSSD_LRS")),
                    data_disks=[cm.DataDisk(lun=i, create_option="Attach", caching=caching,
                                            managed_disk=cm.ManagedDiskParameters(id=disk_id))
                                for i, disk_id in enumerate(disk_ids)]),
                os_profile=os_profile,
                network_profile=cm.NetworkProfile(network_interfaces=[cm.NetworkInterfaceReference(
                    id=nic_id, properties=cm.NetworkInterfaceReferenceProperties(primary=True))])))

    def _ensure_disk(self, spec: FileServerSpec, name: str) -> bool:
        disk = self._get(self._compute.disks, name)
        if disk is None:
            self._compute.disks.begin_create_or_update(self._rg, name, cm.Disk(
                location=self._settings.location, sku=cm.DiskSku(name=spec.storage_account_type),
                tags={"batchai-file-server": spec.arm_id[:256]},
                properties=cm.DiskProperties(creation_data=cm.CreationData(create_option="Empty"),
                                             disk_size_gb=spec.disk_size_gb)), polling=False)
            return False
        return _state(disk) == "succeeded"

    def _ensure_nic(self, spec: FileServerSpec, name: str) -> bool:
        nic = self._get(self._network.network_interfaces, name)
        if nic is None:
            subnet = spec.subnet_id or self._settings.subnet_id
            if not subnet:
                raise ComputeRejected("SubnetRequired", "no file server subnet and no BATCHAI_SUBNET_ID")
            self._network.network_interfaces.begin_create_or_update(self._rg, name, nm.NetworkInterface(
                location=self._settings.location, tags={"batchai-file-server": spec.arm_id[:256]},
                properties=nm.NetworkInterfacePropertiesFormat(ip_configurations=[nm.NetworkInterfaceIPConfiguration(
                    name="ip0", properties=nm.NetworkInterfaceIPConfigurationPropertiesFormat(
                        subnet=nm.Subnet(id=subnet), private_ip_allocation_method="Dynamic", primary=True))])),
                polling=False)
            return False
        return _state(nic) == "succeeded"

    def _vm_status(self, vm: cm.VirtualMachine, names: ResourceNames) -> FileServerOperation:
        state = _state(vm)
        if state == "failed":
            return FileServerOperation("failed", detail="the file server VM failed to provision")
        if state == "deleting":
            return FileServerOperation("deleting")
        if state != "succeeded":
            return FileServerOperation("creating")
        nic = self._network.network_interfaces.get(self._rg, names.nic)
        ip = next((c.properties.private_ip_address for c in nic.properties.ip_configurations or []
                   if c.properties and c.properties.private_ip_address), "")
        return FileServerOperation("succeeded", {"mountPoint": MOUNT_POINT, "fileServerInternalIP": ip,
                                                 "fileServerType": "nfs"})

    def _get(self, operations: Any, name: str) -> Any:
        """The resource, or None when it does not exist (operations: an SDK operations group)."""
        try:
            return operations.get(self._rg, name)
        except ResourceNotFoundError:
            return None
