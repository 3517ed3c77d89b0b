"""The VM scale set provider: one uniform scale set per cluster, its instances are the cluster's nodes.

Naming: the scale set of cluster key K is `scale_set_name(K)`; its computer name prefix is
`bai` + 8 hex of K, and Azure names each VM prefix + base-36 instance id on 6 characters. The
node id IS the computer name (the VM's host name, which the node agent registers with), so node
ids are queue-name safe and map back to instance ids (`instance_id_of`).

Non-blocking and idempotent: every call starts at most one ARM operation with `polling=False`
and returns; the next tick observes the scale set's provisioningState (Creating/Updating/
Deleting: an operation runs, start nothing) and the instances' states. Retries of throttling and
server errors are azure-core's RetryPolicy (it honours Retry-After); other ARM refusals raise
`ComputeRejected` (permanent: the caller records it on the cluster).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import models as cm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.capabilities import ComputeRejected, text
from shared.adapters.compute.cloud_init import AgentConfig, render_cloud_init
from shared.adapters.compute.port import ClusterSpec, Instance
from shared.adapters.compute.vm_sizes import is_gpu_size
from shared.adapters.compute.vmss_login import NodeLogins
from shared.config import AzureComputeSettings
from shared.domain.keys import ClusterRef

CLUSTER_TAG = "batchai-cluster"
# The default images: Ubuntu 24.04 LTS (Python 3.12, the agent's Python), the HPC image of 24.04 on GPU sizes.
UBUNTU_2404 = {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}
UBUNTU_2404_GPU = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2404", "version": "latest"}
BUSY_STATES = ("creating", "updating", "deleting", "migrating")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

FileServerIps = Callable[[ClusterSpec], Mapping[str, str]]
Opener = Callable[[Any], Any]  # opens the sealed secrets of a document (`shared.adapters.secret_box`)


def _hash(cluster_key: str) -> str:
    return hashlib.sha256(cluster_key.encode()).hexdigest()[:8]


def _slug(value: str, size: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:size] or "x"


def scale_set_name(cluster_key: str) -> str:
    ref = ClusterRef.from_key(cluster_key)
    return f"bai-{_slug(ref.workspace.workspace, 20)}-{_slug(ref.name, 24)}-{_hash(cluster_key)}"


def computer_name_prefix(cluster_key: str) -> str:
    return f"bai{_hash(cluster_key)}"


def instance_id_of(node_id: str) -> str:
    """The scale set instance id of a node id (computer name: prefix + base-36 id on 6 chars)."""
    return str(int(node_id[-6:], 36))


def node_id_of(cluster_key: str, instance_id: str) -> str:
    n, digits = int(instance_id), ""
    while n:
        n, d = divmod(n, 36)
        digits = _B36[d] + digits
    return computer_name_prefix(cluster_key) + digits.rjust(6, "0")


def _rejected(err: HttpResponseError) -> Exception:
    status = err.status_code or 0
    if status == 429 or status >= 500:
        return err  # transient: the retry policy gave up; the next tick tries again
    code = getattr(err.error, "code", None) or str(status)
    return ComputeRejected(code, getattr(err.error, "message", None) or str(err))


class VmssProvider:
    """ComputeProvider over Azure VM scale sets (dedicated or Spot), plus `protect` and `clusters`."""

    name = "vmss"

    def __init__(self, clients: AzureClients, settings: AzureComputeSettings,
                 file_server_ips: FileServerIps | None = None, open_secrets: Opener | None = None) -> None:
        self._compute = clients.compute
        self._network = clients.network
        self._settings = settings
        self._rg = settings.resource_group
        self._file_server_ips = file_server_ips or (lambda spec: {})
        self._open = open_secrets or (lambda document: document)
        self._logins = NodeLogins(clients.network, settings.subscription_id, settings.resource_group,
                                  settings.location) if settings.node_ssh_nat else None

    @classmethod
    def from_settings(cls, settings: AzureComputeSettings, open_secrets: Opener | None = None) -> VmssProvider:
        return cls(AzureClients.from_settings(settings), settings, open_secrets=open_secrets)

    # -- the port -------------------------------------------------------------------------
    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        name = scale_set_name(spec.cluster_key)
        try:
            current = self._get(name)
            if current is None:
                nat_pool = None
                if self._logins is not None:  # the load balancer first: the scale set's NICs name its NAT pool
                    nat_pool = self._logins.ensure(name, {CLUSTER_TAG: spec.cluster_key})
                    if nat_pool is None:
                        return
                self._compute.virtual_machine_scale_sets.begin_create_or_update(
                    self._rg, name, self.scale_set_model(spec, target, nat_pool), polling=False)
                return
            if text(current.properties.provisioning_state) in BUSY_STATES:
                return  # an operation runs: observe it next tick, start nothing
            if remove:
                vms = self._vms(name, expand=False)
                ids = sorted((vm.instance_id for vm in vms
                              if (vm.properties.os_profile.computer_name in remove)
                              and text(vm.properties.provisioning_state) != "deleting"), key=int)
                if ids:
                    self._compute.virtual_machine_scale_sets.begin_delete_instances(
                        self._rg, name, cm.VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=ids),
                        polling=False)
                    return  # capacity drops by len(ids); any further change is next tick's
            if int(current.sku.capacity or 0) != target:
                self._compute.virtual_machine_scale_sets.begin_update(
                    self._rg, name, cm.VirtualMachineScaleSetUpdate(sku=cm.Sku(capacity=target)), polling=False)
        except HttpResponseError as err:
            raise _rejected(err) from err

    def list_instances(self, cluster_key: str) -> list[Instance]:
        name = scale_set_name(cluster_key)
        try:
            vms = self._vms(name, expand=True)
            ips, configs = self._private_ips(name) if vms else ({}, {})
        except ResourceNotFoundError:
            return []
        logins = self._logins.endpoints(name) if self._logins is not None and vms else {}
        instances = []
        for vm in vms:
            instance = _instance(vm, ips.get(vm.id.lower(), ""))
            login = next((logins[c] for c in configs.get(vm.id.lower(), []) if c in logins), None)
            if login is not None:
                instance = dataclasses.replace(instance, login_address=login[0], login_port=login[1])
            instances.append(instance)
        return instances

    def delete_cluster(self, cluster_key: str) -> None:
        name = scale_set_name(cluster_key)
        current = self._get(name)
        if current is None:
            if self._logins is not None:  # the load balancer outlives its scale set's NICs, not the scale set
                self._logins.delete(name)
            return
        if text(current.properties.provisioning_state) == "deleting":
            return
        self._compute.virtual_machine_scale_sets.begin_delete(self._rg, name, polling=False)

    # -- capabilities beyond the port --------------------------------------------------------
    def protect(self, cluster_key: str, node_ids: Iterable[str], busy: bool) -> None:
        """Protect busy nodes from scale-in (a capacity decrease never picks them), or release them."""
        name = scale_set_name(cluster_key)
        for node_id in node_ids:
            try:
                vm = self._compute.virtual_machine_scale_set_vms.get(self._rg, name, instance_id_of(node_id))
            except ResourceNotFoundError:
                continue  # gone already: nothing to protect
            policy = vm.properties.protection_policy
            if policy is not None and bool(policy.protect_from_scale_in) == busy:
                continue
            vm.properties.protection_policy = cm.VirtualMachineScaleSetVMProtectionPolicy(protect_from_scale_in=busy)
            self._compute.virtual_machine_scale_set_vms.begin_update(self._rg, name, vm.instance_id, vm,
                                                                     polling=False)

    def clusters(self) -> set[str]:
        """Cluster keys of the scale sets this service created in the resource group."""
        found = self._compute.virtual_machine_scale_sets.list(self._rg)
        keys = {vmss.tags[CLUSTER_TAG] for vmss in found if vmss.tags and CLUSTER_TAG in vmss.tags}
        return keys | (self._logins.tagged(CLUSTER_TAG) if self._logins is not None else set())

    # -- the scale set model -------------------------------------------------------------------
    def scale_set_model(self, spec: ClusterSpec, capacity: int,
                        nat_pool: str | None = None) -> cm.VirtualMachineScaleSet:
        # The stored secrets (mount keys, the admin password) leave here, opened, for ARM's custom data
        # and OS profile, which ARM never returns.
        spec = dataclasses.replace(spec, properties=self._open(spec.properties))
        props = spec.properties
        settings = self._settings
        spot = spec.vm_priority == "lowpriority"
        subnet = ((props.get("subnet") or {}).get("id")) or settings.subnet_id
        if not subnet:
            raise ComputeRejected("SubnetRequired", "the cluster has no subnet and BATCHAI_SUBNET_ID is not set")
        custom_data = base64.b64encode(render_cloud_init(spec, self.agent_config(spec)).encode()).decode()
        profile = cm.VirtualMachineScaleSetVMProfile(
            os_profile=self._os_profile(spec, custom_data),
            storage_profile=cm.VirtualMachineScaleSetStorageProfile(
                image_reference=image_reference(spec),
                os_disk=cm.VirtualMachineScaleSetOSDisk(
                    create_option="FromImage", caching="ReadWrite",
                    managed_disk=cm.VirtualMachineScaleSetManagedDiskParameters(storage_account_type="StandardSSD_LRS"))),
            network_profile=cm.VirtualMachineScaleSetNetworkProfile(network_interface_configurations=[
                cm.VirtualMachineScaleSetNetworkConfiguration(
                    name="nic0", properties=cm.VirtualMachineScaleSetNetworkConfigurationProperties(
                        primary=True, enable_accelerated_networking=False, ip_configurations=[
                            cm.VirtualMachineScaleSetIPConfiguration(
                                name="ip0", properties=cm.VirtualMachineScaleSetIPConfigurationProperties(
                                    primary=True, subnet=cm.ApiEntityReference(id=subnet),
                                    load_balancer_inbound_nat_pools=[cm.SubResource(id=nat_pool)] if nat_pool
                                    else None))]))]),
            priority="Spot" if spot else "Regular",
        )
        if spot:
            profile.eviction_policy = "Delete"
            profile.billing_profile = cm.BillingProfile(max_price=-1)
        # The scale set's own identity proves to the service that a caller is a node of this cluster;
        # the shared user-assigned one reads the Key Vault secrets of mounts at boot.
        identity = cm.VirtualMachineScaleSetIdentity(type="SystemAssigned")
        if settings.identity_resource_id:
            identity = cm.VirtualMachineScaleSetIdentity(
                type="SystemAssigned, UserAssigned",
                user_assigned_identities={settings.identity_resource_id: cm.UserAssignedIdentitiesValue()})
        return cm.VirtualMachineScaleSet(
            location=settings.location,
            tags={CLUSTER_TAG: spec.cluster_key, "batchai-cluster-id": spec.arm_id[:256]},
            sku=cm.Sku(name=spec.vm_size, tier="Standard", capacity=capacity),
            identity=identity,
            properties=cm.VirtualMachineScaleSetProperties(
                overprovision=False, upgrade_policy=cm.UpgradePolicy(mode="Manual"),
                virtual_machine_profile=profile),
        )

    def agent_config(self, spec: ClusterSpec) -> AgentConfig:
        """What the nodes of `spec` are told in their custom data, with a new ssh key pair of the cluster."""
        settings = self._settings
        if not settings.node_service_url:
            raise ComputeRejected("NodeServiceUrlMissing", "BATCHAI_NODE_SERVICE_URL is not set: nodes could not "
                                  "reach the service for their credentials")
        private, public = cluster_ssh_key()
        return AgentConfig(
            cluster_key=spec.cluster_key, storage_account=settings.storage_account,
            identity_client_id=settings.identity_client_id, service_url=settings.node_service_url.rstrip("/"),
            token_resource=settings.node_token_audience, imds_url=settings.imds_url.rstrip("/"),
            storage_endpoints=settings.node_storage_endpoints,
            ca_pem=Path(settings.node_ca_file).read_text() if settings.node_ca_file else "",
            ssh_private_key=private, ssh_public_key=public, file_server_ips=self._file_server_ips(spec))

    def _os_profile(self, spec: ClusterSpec, custom_data: str) -> cm.VirtualMachineScaleSetOSProfile:
        account = spec.properties.get("userAccountSettings") or {}
        user = account.get("adminUserName") or "batchai"
        key = account.get("adminUserSshPublicKey") or self._settings.ssh_public_key
        password = account.get("adminUserPassword")
        if not key and not password:
            raise ComputeRejected("CredentialsRequired", "userAccountSettings need an SSH public key or a password")
        linux = cm.LinuxConfiguration(disable_password_authentication=not password)
        if key:
            linux.ssh = cm.SshConfiguration(public_keys=[
                cm.SshPublicKey(path=f"/home/{user}/.ssh/authorized_keys", key_data=key)])
        profile = cm.VirtualMachineScaleSetOSProfile(
            computer_name_prefix=computer_name_prefix(spec.cluster_key), admin_username=user,
            custom_data=custom_data, linux_configuration=linux)
        if password:
            profile.admin_password = password
        return profile

    # -- observation ---------------------------------------------------------------------------
    def _get(self, name: str) -> cm.VirtualMachineScaleSet | None:
        try:
            return self._compute.virtual_machine_scale_sets.get(self._rg, name)
        except ResourceNotFoundError:
            return None

    def _vms(self, name: str, expand: bool) -> list[cm.VirtualMachineScaleSetVM]:
        kwargs: dict[str, Any] = {"expand": "instanceView"} if expand else {}
        return list(self._compute.virtual_machine_scale_set_vms.list(self._rg, name, **kwargs))

    def _private_ips(self, name: str) -> tuple[dict[str, str], dict[str, list[str]]]:
        """VM id (lower) -> primary private IP, and VM id (lower) -> its IP configuration ids (lower), from
        the scale set's network interfaces."""
        ips: dict[str, str] = {}
        configs: dict[str, list[str]] = {}
        for nic in self._network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(self._rg, name):
            vm = nic.virtual_machine
            for config in nic.ip_configurations or []:
                if vm is not None and config.id:
                    configs.setdefault(vm.id.lower(), []).append(config.id.lower())
                if vm is not None and config.private_ip_address and (config.primary or vm.id.lower() not in ips):
                    ips[vm.id.lower()] = config.private_ip_address
        return ips, configs


def cluster_ssh_key() -> tuple[str, str]:
    """A new ed25519 key pair in OpenSSH format (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " batchai-cluster"


def image_reference(spec: ClusterSpec) -> cm.ImageReference:
    """The cluster's image: its custom image id, its marketplace image, or Ubuntu 22.04 (HPC on GPU sizes)."""
    ref = (spec.properties.get("virtualMachineConfiguration") or {}).get("imageReference") or {}
    if ref.get("virtualMachineImageId"):
        return cm.ImageReference(id=ref["virtualMachineImageId"])
    if ref.get("publisher"):
        return cm.ImageReference(publisher=ref["publisher"], offer=ref["offer"], sku=ref["sku"],
                                 version=ref.get("version") or "latest")
    return cm.ImageReference(**(UBUNTU_2404_GPU if is_gpu_size(spec.vm_size) else UBUNTU_2404))


def _instance(vm: cm.VirtualMachineScaleSetVM, address: str) -> Instance:
    props = vm.properties
    state = text(props.provisioning_state)
    codes = [s.code or "" for s in ((props.instance_view.statuses or []) if props.instance_view else [])]
    power = next((c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")), "")
    node_id = props.os_profile.computer_name
    if state == "deleting":
        return Instance(node_id, "deleting", address)
    if state == "failed":
        detail = next((s.message or s.code for s in props.instance_view.statuses if s.level == "Error"), "")\
            if props.instance_view else ""
        return Instance(node_id, "failed", address, detail or "provisioning failed")
    if state == "succeeded" and power == "running":
        return Instance(node_id, "running", address)
    if power in ("stopped", "deallocated", "deallocating", "stopping"):
        return Instance(node_id, "failed", address, f"VM is {power}")
    return Instance(node_id, "creating", address)
